"""What archc tells a user about work that takes a while, and the small faults of its output:
`archc build` says what it wrote (stderr; --quiet silences it), --help names the defaults,
`archc train` announces the first compile, curves.png has whole-number epoch ticks, the
compression log words a schedule without decay, the sensitivity plot has a legend."""
from __future__ import annotations

import os

import pytest

import archc
from archc._cli import main, make_parser


def _run(capsys, *argv):
    capsys.readouterr()
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_build_reports_what_it_wrote(tmp_path, capsys):
    out = tmp_path / "net.py"
    rc, stdout, err = _run(capsys, "build", "se_sqnxt", "-o", str(out))
    lines = out.read_text().count("\n")
    assert rc == 0 and stdout == ""
    assert err == f"wrote {out} ({lines} lines, SESqueezeNext, torch)\n"
    rc, stdout, err = _run(capsys, "build", "se_sqnxt", "-o", str(out), "--quiet")
    assert rc == 0 and stdout == "" and err == ""
    # to stdout: the module only, nothing on stderr (a pipe gets exactly the source)
    rc, stdout, err = _run(capsys, "build", "se_sqnxt", "--backend", "jax")
    assert rc == 0 and stdout == archc.build_source("se_sqnxt", backend="jax") and err == ""


def test_build_onnx_reports_what_it_wrote(tmp_path, capsys):
    pytest.importorskip("onnx")
    pytest.importorskip("torch")
    out = tmp_path / "net.onnx"
    rc, _, err = _run(capsys, "build", "sqnxt", "-D", "stages=[1,1,1,1]", "--backend", "onnx",
                      "-o", str(out))
    kb = os.path.getsize(out) / 1e3
    assert rc == 0 and err == f"wrote {out} ({kb:,.0f} kB, SqueezeNext, onnx, initial weights)\n"


def _help(*argv) -> str:
    parser = make_parser()
    for action in parser._actions:
        if action.dest == "command":
            sub = action.choices[argv[0]]
            for a in sub._actions:
                if len(argv) > 1 and a.dest == "step":
                    return " ".join(a.choices[argv[1]].format_help().split())
            return " ".join(sub.format_help().split())
    raise AssertionError(argv)


def test_help_shows_defaults():
    build = _help("build")
    assert "an ONNX model file (needs -o) (default: torch)" in build
    assert "write here (default: stdout)" in build
    analyze = _help("analyze")
    assert "parameter precision for the size total (default: 32)" in analyze
    assert "the score's reference network (with --bitops) (default: imagenet)" in analyze
    assert "framework to train in (default: jax)" in _help("train")
    assert "(default: 250)" in _help("inspect")
    # options that are off, or whose default the text already gives, get no second default
    assert "(default: None)" not in build and "(default: False)" not in build
    train = _help("train")
    assert "(default: None)" not in train and "epochs to train (default 200, the papers')" in train
    assert "(default 0.1:0.9:0.05)" in _help("compress", "sensitivity")
    assert "START:STOP:STEP (STOP included) or a comma-separated list" in _help(
        "compress", "sensitivity")


def test_compress_schedule_in_words():
    from archc.compression.steps import lr_text
    from archc.training.recipe import Recipe
    decays = Recipe.from_dict({"epochs": 40, "lr": 1e-3, "gamma": 0.1, "milestones": (20,)})
    assert lr_text(decays) == "LR 0.001, x0.1 after epoch 20"
    none = Recipe.from_dict({"epochs": 1, "lr": 1e-3, "gamma": 0.1, "milestones": ()})
    assert none.decay_epochs == () and lr_text(none) == "LR 0.001, constant"


def _figures(monkeypatch):
    from matplotlib.figure import Figure
    drawn = []
    real = Figure.savefig

    def savefig(self, *a, **kw):
        drawn.append(self)
        return real(self, *a, **kw)
    monkeypatch.setattr(Figure, "savefig", savefig)
    return drawn


def test_curves_have_whole_epoch_ticks(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from archc.training import run_dir as R
    drawn = _figures(monkeypatch)
    run = R.RunDir(str(tmp_path / "run"), {"network": "N", "backend": "jax"}, False)
    h = [{"epoch": e, "train_loss": 2.0 / e, "test_loss": 2.1 / e, "train_acc": 10.0 * e,
          "test_acc": 11.0 * e} for e in (1, 2, 3)]
    run.write_metrics(h, last=True)
    [fig] = drawn
    for ax in fig.axes:
        lo, hi = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
        assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks), ticks


@pytest.mark.parametrize("layers", [3, 45])
def test_sensitivity_plot_has_a_legend(layers):
    pytest.importorskip("matplotlib")
    from archc.compression.sensitivity import plot
    fractions = [0.1, 0.5, 0.9]
    curve = {f"conv{i}": [50.0, 40.0 - i * 0.1, 20.0] for i in range(layers)}
    fig = plot(curve, fractions, dense=52.0, bound=48.0, title="t")
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "unpruned 52.00%" in labels and "bound 48.00%" in labels
    if layers <= 40:
        assert [lb for lb in labels if lb.startswith("conv")] == list(curve)
    else:  # a colour bar from the first layer to the last
        [bar] = fig.axes[1:]
        assert [t.get_text() for t in bar.get_yticklabels()] == ["conv0", f"conv{layers - 1}"]


def test_train_announces_the_first_compile(tmp_path, monkeypatch):
    """The first step compiles (a minute or more on a big network): one line says so before
    it, and no other epoch repeats it. progress=False (--no-progress) also turns off the
    decoding bar."""
    pytest.importorskip("jax")
    import contextlib

    from archc.training import data as D
    from test_data_parallel import TINY, make_data  # two convs with BN, 8x8 images, 2 classes
    bars = []

    @contextlib.contextmanager
    def decode_progress(path, enabled):
        bars.append(enabled)
        yield
    monkeypatch.setattr(D, "_decode_progress", decode_progress)
    make_data(str(tmp_path / "data"), per_class=4, test_per_class=2)
    lines = []
    archc.train(archc.load_source(TINY), str(tmp_path / "data"),
                {"epochs": 2, "batch_size": 4}, out=str(tmp_path / "run"), progress=False,
                cache=False, log=lines.append)
    from archc.training.run_dir import COMPILE_NOTE
    assert lines.count(COMPILE_NOTE) == 1
    first_epoch = next(i for i, line in enumerate(lines) if line.startswith("epoch 1/2"))
    assert lines.index(COMPILE_NOTE) < first_epoch
    assert "later runs reuse the compilation cache" in COMPILE_NOTE
    assert bars == [False]


def test_readme_sweep_example_labels_every_point(tmp_path, monkeypatch, capsys):
    """The README's sweep command runs, and its plot names every combination."""
    pytest.importorskip("matplotlib")
    drawn = _figures(monkeypatch)
    png = tmp_path / "pareto.png"
    rc, out, err = _run(capsys, "sweep", "se_sqnxt", "--grid", "width=[0.5, 1.0, 2.0]", "--grid",
                        "stages=[[1,2,4,1],[1,2,8,1]]", "--plot", str(png))
    assert rc == 0, err
    assert "6 combinations in" in err and png.read_bytes()[:4] == b"\x89PNG"
    [fig] = drawn
    labels = sorted(t.get_text() for t in fig.axes[0].texts)
    assert labels == sorted(f"width={w}, stages=[1, 2, {s}, 1]" for w in ("0.5", "1.0", "2.0")
                            for s in (4, 8)), labels


@pytest.mark.parametrize("baseline, title", [("imagenet", "ImageNet: MobileNetV2-1.4"),
                                             ("cifar100", "CIFAR-100: WideResNet-28-10")])
def test_compress_summary_says_what_the_score_is_against(baseline, title):
    from archc.compression.steps import format_summary
    text = format_summary({"network": "N", "rules": "table1", "baseline": baseline,
                           "spec": "/tmp/c/model.quant", "stages": []})
    first, second = text.splitlines()[:2]
    assert f"against the MicroNet baseline {title}" in first and "relative" in first
    assert "batch norm folded into the layer before it" in second
