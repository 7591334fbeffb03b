"""archc.train()'s options (archc.training.options.TrainOptions, training/api.py): an error
names an option as its caller wrote it, `devices=` from Python and `--devices` from the
command line, for the same mistake; the options' defaults are archc.train()'s."""
from __future__ import annotations

import dataclasses
import inspect

import pytest

pytest.importorskip("jax")
pytest.importorskip("PIL.Image")

import archc  # noqa: E402
from archc.compiler import ArchError  # noqa: E402
from archc.training.options import TrainOptions, option, spelled  # noqa: E402
from archc.training.recipe import Recipe  # noqa: E402

from test_data_parallel import TINY, make_data  # noqa: E402


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("options")
    make_data(str(root / "data"))
    (root / "tiny.arch").write_text(TINY)
    return root


def python_error(setup, out, **kw) -> str:
    with pytest.raises(ArchError) as err:
        archc.train(str(setup / "tiny.arch"), str(setup / "data"), out=str(setup / out),
                    progress=False, cache=False, log=lambda *a: None, **kw)
    return err.value.format()


def cli_error(setup, out, args, capsys) -> str:
    from archc._cli import main
    capsys.readouterr()
    rc = main(["train", str(setup / "tiny.arch"), "--data", str(setup / "data"), "--out",
               str(setup / out), "--no-progress", "--no-cache", *args])
    err = capsys.readouterr().err
    assert rc == 2, err
    return err


# (archc.train keywords, the same as flags, what Python's error says, what the command's says)
SAME_MISTAKE = [
    ({"backend": "torch", "devices": 2}, ["--backend", "torch", "--devices", "2"],
     ["devices=, the multi-host options, stream='on' and loader_workers= are options of the "
      "JAX backend", "train with backend='jax'"],
     ["--devices, the multi-host options, --stream on and --loader-workers are options of the "
      "JAX backend", "train with --backend jax"]),
    ({"loader_workers": -1}, ["--loader-workers", "-1"],
     ["loader_workers= must be 0 or more, not -1"], ["--loader-workers must be 0 or more"]),
    ({"stream": "on", "val_split": 4}, ["--stream", "on", "--val-split", "4"],
     ["val_split= and the per-class subsets", "or stream='off' for a data set that fits"],
     ["--val-split and the per-class subsets", "or --stream off for a data set that fits"]),
    ({"val_split": 99}, ["--val-split", "99"],
     ["val_split=99 must be between 1 and 31"], ["--val-split 99 must be between 1 and 31"]),
    ({"devices": 9}, ["--devices", "9"],
     ["devices=9: this process has", "choose devices= between 1 and"],
     ["--devices 9: this process has", "choose --devices between 1 and"]),
    ({"resume": True}, ["--resume"],
     ["resume=True: ", "holds no run to resume", "without resume=True first"],
     ["--resume: ", "holds no run to resume", "without --resume first"]),
    ({"recipe": {"epochs": 0}}, ["--epochs", "0"],
     ["epochs= must be at least 1"], ["--epochs must be at least 1"]),
    ({"recipe": {"epochs": 5, "milestones": [4, 2]}}, ["--epochs", "5", "--milestones", "4,2"],
     ["milestones=(4, 2) must increase strictly"], ["--milestones 4,2 must increase strictly"]),
]


@pytest.mark.parametrize("kw, flags, from_python, from_cli", SAME_MISTAKE,
                         ids=[" ".join(f[1]) for f in SAME_MISTAKE])
def test_errors_name_options_as_the_caller_wrote_them(setup, capsys, kw, flags, from_python,
                                                      from_cli):
    if kw.get("backend") == "torch":
        pytest.importorskip("torch")
    said = python_error(setup, "py", **kw)
    for text in from_python:
        assert text in said, said
    assert "--" not in said, said  # no flag in what Python is told
    said = cli_error(setup, "cli", flags, capsys)
    for text in from_cli:
        assert text in said, said
    assert "=" not in said.split("\n")[0], said


def test_the_spelling_ends_with_the_call(setup):
    """After archc.train() (an error inside it included), code outside any run is spelled as
    before: the command's flags."""
    python_error(setup, "py2", recipe={"epochs": 0})
    with pytest.raises(ArchError, match="--epochs must be at least 1"):
        Recipe(epochs=0)
    with spelled("keyword"):
        assert (option("batch_size", 6), option("resume", True), option("out")) == \
            ("batch_size=6", "resume=True", "out=")
    assert (option("batch_size", 6), option("resume", True), option("milestones", (6, 8))) == \
        ("--batch-size 6", "--resume", "--milestones 6,8")
    with pytest.raises(ValueError):
        with spelled("flags"):
            pass


def test_options_are_archc_train_keywords_with_its_defaults():
    """TrainOptions has one field for each of archc.train()'s keywords but the recipe, and the
    defaults its docstring gives; the command line's flags are the same names with dashes."""
    fields = {f.name: f.default for f in dataclasses.fields(TrainOptions)}
    keywords = [p.name for p in inspect.signature(archc.train).parameters.values()
                if p.kind is p.KEYWORD_ONLY]
    assert sorted(fields) == sorted(keywords)
    assert TrainOptions() == TrainOptions(backend="jax", out=None, resume=False, progress=True,
                                          cache=True, stream="auto", coarse_labels=False)
    assert fields["log"] is print
    from archc._cli import make_parser
    train = make_parser()._subparsers._group_actions[0].choices["train"]
    flags = {a.dest: a.option_strings for a in train._actions}
    named = [name for name in fields if flags.get(name)]
    assert len(named) >= 12, named  # progress and cache are --no-progress, --no-cache
    for name in named:
        assert flags[name] == [option(name)], name
    for field in dataclasses.fields(Recipe):
        if flags.get(field.name):
            assert flags[field.name][0] == option(field.name), field.name  # --no-... beside


def test_missing_packages_named_for_the_caller(setup, monkeypatch, capsys):
    """The error for a missing training package names the call as it was made: archc.train()
    with backend=, or `archc train --backend`."""
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "tqdm" else real(name, *a))
    said = python_error(setup, "py3", backend="torch")
    assert "archc.train(backend='torch') needs packages that are not installed: tqdm" in said
    said = cli_error(setup, "cli3", ["--backend", "torch"], capsys)
    assert "archc train --backend torch needs packages that are not installed: tqdm" in said
