"""`archc inspect RUN --se-activations` on a tiny real run: SE-SqueezeNext trained for one
epoch (torch) on a small image folder written here, then its SE gates read back in torch and
in JAX."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import archc
from archc._cli import main
from archc.compiler import ArchError

torch = pytest.importorskip("torch")
pytest.importorskip("jax")
Image = pytest.importorskip("PIL.Image")

from archc.backends import torch_backend, weights  # noqa: E402
from archc.training.se_activations import (  # noqa: E402
    _normalise, gate_statistics, inspect_run, se_gates)

NET = dict(stages=[1, 1, 1, 1], width=0.25)
CLASSES = [f"c{k}" for k in range(10)]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """An image folder (6 train and 4 test PNGs per class, brightness by class) and a one-epoch
    torch run of SE-SqueezeNext-06 at width 0.25 on it."""
    root = tmp_path_factory.mktemp("inspect")
    data = root / "data"
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("test", 4)):
        for k, name in enumerate(CLASSES):
            (data / split / name).mkdir(parents=True)
            for i in range(n):
                img = rng.integers(0, 60, (32, 32, 3)) + 18 * k
                Image.fromarray(img.astype(np.uint8)).save(data / split / name / f"{i}.png")
    out = root / "run"
    archc.train("se_sqnxt", str(data), {"epochs": 1, "batch_size": 20}, backend="torch",
                out=str(out), progress=False, cache=False, log=lambda *a: None, **NET)
    return out, data


def test_gates_found_from_the_ir():
    net = archc.load("se_sqnxt", **NET)
    gates = se_gates(net)
    assert [g["gate"] for g in gates] == [f"stage{s}.block1.se.gate" for s in (1, 2, 3, 4)]
    assert [g["channels"] for g in gates] == [8, 16, 32, 64]
    assert se_gates(archc.load("mobilenet_v3"))[0]["gate"].endswith("se.gate")  # hsigmoid
    with pytest.raises(ArchError, match="has no SE block"):
        gate_statistics(archc.load("sqnxt", **NET), {}, np.zeros((1, 32, 32, 3), np.uint8),
                        np.zeros(1, np.int64), 10)


def _raw_gates(net, tensors, x_u8, norm):
    """Every gate's output and the fc2 output before it, for images x (torch, tap mode),
    normalised with `norm` (the run's recorded statistics)."""
    seen = {}

    def tap(name, value):
        seen[name] = value.detach().reshape(len(x_u8), -1).numpy().copy()
        return value
    model = torch_backend.compile_module(net, tap=tap)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in tensors.items()})
    model.eval()
    with torch.no_grad():
        model(torch.from_numpy(_normalise(x_u8, norm)).permute(0, 3, 1, 2).contiguous())
    return seen


@pytest.mark.slow   # the module's training run
def test_statistics_per_class_and_channel(run, tmp_path):
    out, data = run
    result = inspect_run(str(out), str(data), out=str(tmp_path), log=lambda *a: None)
    summary = json.loads((out / "summary.json").read_text())
    assert result["images_per_class"] == [4] * 10 and result["classes"] == CLASSES
    # the weights, data and normalisation are the run's: the same test accuracy
    assert result["accuracy"] == pytest.approx(summary["last_test_acc"], abs=1e-9)
    # recompute from the raw gate values, grouped by class with numpy
    from archc.training.data import load_images
    test = load_images(str(data), cache=False)
    net = archc.load("se_sqnxt", **NET)
    from archc.training.norm import recorded
    norm = recorded(json.loads((out / "run.json").read_text()))
    assert norm.source == "training split" and norm.images == 60   # not the CIFAR-10 fallback
    raw = _raw_gates(net, weights.load(out / "model.safetensors"), test.test_x, norm)
    for b in result["blocks"]:
        g = raw[b["gate"]]
        fc2 = raw[b["gate"].replace(".gate", ".fc2")]
        np.testing.assert_allclose(g, 1 / (1 + np.exp(-fc2)), rtol=1e-5)   # the sigmoid's output
        for k in range(10):
            sel = g[test.test_y == k]
            np.testing.assert_allclose(b["mean"][k], sel.mean(0), atol=1e-6)
            np.testing.assert_allclose(b["std"][k], sel.std(0), atol=1e-5)
        means = np.stack([g[test.test_y == k].mean(0) for k in range(10)])
        stds = np.stack([g[test.test_y == k].std(0) for k in range(10)])
        assert b["between_class_std"] == pytest.approx(means.std(0).mean(), abs=1e-6)
        assert b["within_class_std"] == pytest.approx(stds.mean(), abs=1e-6)
        np.testing.assert_allclose(b["mean_all"], g.mean(0), atol=1e-6)
        np.testing.assert_allclose(b["std_all"], g.std(0), atol=1e-5)
    assert json.loads((tmp_path / "se_activations.json").read_text())["blocks"][3]["channels"] == 64
    for png in ("se_activations.png", "se_activations_std.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


TINY = """import "std/se.arch"
network TinySE(classes: int = 10) {
    x = input(3, 32, 32)
    x = x -> conv1: conv(8, kernel=3, stride=2) -> bn1: bn -> act1: relu
    x = se1: se(x, ratio=2)
    x = x -> conv2: conv(16, kernel=3, stride=2) -> act2: relu
    x = se2: se(x, ratio=4, gate="hsigmoid")
    return x -> pool: global_avgpool -> flatten: flatten -> fc: linear(classes)
}
"""


@pytest.mark.slow   # the module's training run
def test_jax_backend_agrees(run, tmp_path):
    """A run folder made by hand (run.json as archc train writes it, random weights and BN
    statistics) for a small network from a file of its own (--arch): torch and JAX agree."""
    from archc.training.data import load_images
    from archc.training.recipe import Recipe
    from archc.training.run_dir import fingerprint
    _, data = run
    arch = tmp_path / "tiny_se.arch"
    arch.write_text(TINY)
    net = archc.load(str(arch))
    folder = tmp_path / "run"
    folder.mkdir()
    fp = fingerprint(net, load_images(str(data), cache=False), Recipe(), "jax")
    (folder / "run.json").write_text(json.dumps(fp))
    torch.manual_seed(0)
    model = torch_backend.compile_module(net)
    sd = weights.state_dict_numpy(model)
    rng = np.random.default_rng(1)
    for k in sd:
        if k.endswith("running_mean"):
            sd[k] = rng.normal(0, 0.5, sd[k].shape).astype(np.float32)
        if k.endswith("running_var"):
            sd[k] = rng.uniform(0.5, 2, sd[k].shape).astype(np.float32)
    weights.save(folder / "model.safetensors", sd)
    t = inspect_run(str(folder), str(data), out=str(tmp_path / "t"), backend="torch",
                    arch=str(arch), log=lambda *a: None)
    j = inspect_run(str(folder), str(data), out=str(tmp_path / "j"), arch=str(arch),
                    log=lambda *a: None)                        # the run's backend: jax
    assert j["backend"] == "jax" and j["images"] == t["images"] == 40
    assert [b["gate"] for b in j["blocks"]] == ["se1.gate", "se2.gate"]
    assert j["accuracy"] == t["accuracy"]
    for bt, bj in zip(t["blocks"], j["blocks"]):
        assert np.ptp(bt["mean_all"]) > 0.01                  # the gates do vary by channel
        np.testing.assert_allclose(bj["mean"], bt["mean"], atol=1e-5)
        np.testing.assert_allclose(bj["std"], bt["std"], atol=1e-5)


@pytest.mark.slow   # the module's training run
def test_cli(run, tmp_path, capsys):
    out, data = run
    code = main(["inspect", str(out), "--se-activations", "--data", str(data), "--out",
                 str(tmp_path), "--per-class", "1"])
    text, err = capsys.readouterr()
    assert code == 0, err
    assert "4 SE blocks over 10 test images" in text
    assert json.loads((tmp_path / "se_activations.json").read_text())["images"] == 10


@pytest.mark.slow   # the module's training run
def test_cli_errors(run, tmp_path, capsys):
    out, data = run
    for args, message in [
        ([str(tmp_path), "--se-activations", "--data", str(data)], "no run.json"),
        ([str(out), "--data", str(data)], "say what to inspect"),
        ([str(out), "--se-activations", "--data", str(data), "--per-class", "0"],
         "--per-class must be at least 1"),
    ]:
        assert main(["inspect", *args]) == 2
        assert message in capsys.readouterr().err
    moved = tmp_path / "moved"
    shutil.copytree(out, moved, ignore=shutil.ignore_patterns("checkpoints"))
    meta = json.loads((moved / "run.json").read_text())
    (moved / "run.json").write_text(json.dumps({**meta, "file": "my_net.arch"}))
    assert main(["inspect", str(moved), "--se-activations", "--data", str(data)]) == 2
    assert "give its path with --arch" in capsys.readouterr().err
    assert main(["inspect", str(moved), "--se-activations", "--data", str(data), "--arch",
                 "sqnxt", "--out", str(tmp_path / "o")]) == 2
    assert "is sqnxt the .arch file the run was trained from?" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
