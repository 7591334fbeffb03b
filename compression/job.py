"""What a compression job starts from, checked before anything is written: a finished
training run (`archc train`), the network it trained, and the same data.

    OUT/compress.json   the run, network and data this folder compresses
    OUT/<step>/         each step's outputs; OUT/<step>/step.json, written last, marks the
                        step as done and records the settings it used
"""
from __future__ import annotations

import os

import numpy as np
from archc._checks import field, run_json
from archc.compiler import ArchError, Network
from archc.compiler.analysis import analyze

from archc.training.data import ImageData
from archc.training.recipe import Recipe
from archc.training.run_dir import mismatch

STEPS = ("sensitivity", "prune", "finetune", "quantize", "qat", "score")
FINISHED_RUN = ("run.json", "summary.json", "model.safetensors")


def read_run(path: str) -> dict:
    """run.json of a finished `archc train` run, or a clear error."""
    if not os.path.isdir(path):
        raise ArchError(f"--from {path}: no such run folder",
                        hint="give the --out folder of a finished `archc train`")
    missing = [f for f in FINISHED_RUN if not os.path.isfile(os.path.join(path, f))]
    if missing:
        hint = ("finish it with `archc train ... --resume`" if "run.json" not in missing
                else "give the --out folder of a finished `archc train`")
        raise ArchError(f"--from {path} is not a finished training run (no "
                        f"{', '.join(missing)})", hint=hint)
    run_file = os.path.join(path, "run.json")
    run = run_json(run_file)
    for key in ("recipe", "data"):
        field(run, key, dict, run_file)
    try:
        recipe = Recipe(**{k: (tuple(v) if k == "milestones" else v)
                           for k, v in run["recipe"].items()
                           if k in Recipe.__dataclass_fields__})
    except ArchError as err:
        raise ArchError(f"{run_file}: recipe: {err.message}") from None
    except (ValueError, KeyError, TypeError) as err:
        raise ArchError(f"--from {path}: run.json cannot be read: {err}") from None
    run["_recipe"] = recipe
    return run


def check_network(net: Network, run: dict, path: str) -> None:
    mine = {"network": net.name, "param_count": analyze(net).totals["params"],
            "params": {k: _jsonable(v) for k, v in net.params.items()}}
    theirs = {k: run.get(k) for k in mine}
    diff = mismatch(theirs, mine)
    if diff:
        raise ArchError(f"--from {path} trained another network:\n  " + "\n  ".join(diff),
                        hint="give the network and -D values the run was trained with")


def check_data(data: ImageData, run: dict, path: str) -> None:
    want = run.get("data", {})
    have = {"source": os.path.basename(data.source.rstrip("/")), "train": len(data.train_y),
            "test": len(data.test_y), "classes": list(data.classes)}
    diff = mismatch({k: want.get(k) for k in have}, have)
    if diff:
        raise ArchError(f"--from {path} was trained on other data:\n  " + "\n  ".join(diff),
                        hint="give the --data, --train-per-class and --test-per-class of the run")


def split_mini(data: ImageData, per_class: int, seed: int) -> tuple[ImageData, ImageData]:
    """(mini-train split as the test split, the rest of the training split as training):
    a class-balanced random draw from the training split, never the test split."""
    rng = np.random.default_rng(seed + 2)
    picks = []
    for c in np.unique(data.train_y):
        idx = np.flatnonzero(data.train_y == c)
        if len(idx) <= per_class:
            raise ArchError(f"--mini-per-class {per_class}: the training split has only "
                            f"{len(idx)} images of class {c}",
                            hint="choose a smaller --mini-per-class")
        picks.append(rng.choice(idx, per_class, replace=False))
    mini = np.sort(np.concatenate(picks))
    rest = np.setdiff1d(np.arange(len(data.train_y)), mini)
    as_test = ImageData(data.train_x[:0], data.train_y[:0], data.train_x[mini],
                        data.train_y[mini], data.classes, data.source)
    train = ImageData(data.train_x[rest], data.train_y[rest], data.test_x, data.test_y,
                      data.classes, data.source)
    return as_test, train


def calibration_images(train: ImageData, n: int, seed: int) -> np.ndarray:
    """n training images drawn at random (the seed's calibration set: 1000)."""
    if n > len(train.train_y):
        raise ArchError(f"--calibration-images {n}: the training split has "
                        f"{len(train.train_y)} images")
    idx = np.sort(np.random.default_rng(seed + 3).choice(len(train.train_y), n, replace=False))
    return train.train_x[idx]


def identity(net: Network, run_path: str, run: dict, data: ImageData) -> dict:
    """What OUT/compress.json records: the folder belongs to this run, network and data."""
    return {"run": os.path.abspath(run_path), "network": net.name,
            "params": {k: _jsonable(v) for k, v in net.params.items()},
            "data": {"source": os.path.basename(data.source.rstrip("/")),
                     "train": len(data.train_y), "test": len(data.test_y)}}


def _jsonable(v):
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v
