"""Per-data-set input normalisation (training/norm.py): the statistics of the training
split actually trained on (in memory: every pixel; streamed: an evenly spaced sample decoded
as evaluation decodes it), used by the JAX and torch loops, recorded in run.json and used
again on --resume; a run.json from before they were recorded resumes with the CIFAR-10
fallback it was trained with."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from archc.training import norm as N
from archc.training.data import ImageData, load_images
from archc.compiler import ArchError

from test_data_parallel import TINY, make_data  # two convs with BN on 8x8 images, 2 classes

PIL = pytest.importorskip("PIL.Image")

PACK = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data",
                                     "cifar10", "cifar10-jpeg.tar.xz"))

STATS = N.Normalization((0.2, 0.5, 0.7), (0.1, 0.3, 0.25), 10, "given")


def numpy_stats(images):
    """The plain computation: every pixel as float64 in [0, 1], population std."""
    px = images.reshape(-1, images.shape[-1]).astype(np.float64) / 255
    return px.mean(0), px.std(0)


def normalised(x_u8, stats):
    mean = np.asarray(stats.mean, np.float32) * 255
    std = np.asarray(stats.std, np.float32) * 255
    return (x_u8.astype(np.float32) - mean) / std


def synthetic(n=60, size=6, seed=0):
    """uint8 images whose channels have different means and spreads, 3 classes."""
    rng = np.random.default_rng(seed)
    x = np.stack([rng.normal(m, s, (n, size, size)) for m, s in
                  ((60, 20), (128, 50), (200, 30))], -1)
    x = np.clip(x, 0, 255).astype(np.uint8)
    y = (np.arange(n) % 3).astype(np.int32)
    return ImageData(x, y, x[:6], y[:6], ("a", "b", "c"), "synthetic")


# ---- the statistics ---------------------------------------------------------------------------
def test_image_stats_equal_numpy_in_chunks(monkeypatch):
    data = synthetic()
    want_mean, want_std = numpy_stats(data.train_x)
    monkeypatch.setattr(N, "CHUNK_PIXELS", 7)          # chunks that split images
    for chunk in (1, 7, 1000):
        got = N.image_stats(data.train_x, chunk=chunk)
        np.testing.assert_allclose(got.mean, want_mean, rtol=0, atol=1e-12)
        np.testing.assert_allclose(got.std, want_std, rtol=0, atol=1e-12)
        assert got.images == 60 and got.source == "training split"


def test_stats_follow_subset_and_holdout():
    """The split trained on: after --val-split (holdout) and --train-per-class (subset)."""
    data = synthetic(n=90)
    for split in (data.holdout(30, seed=0), data.subset(10, None, seed=1),
                  data.holdout(30, seed=0).subset(8, None, seed=0)):
        got = N.training_stats(split)
        mean, std = numpy_stats(split.train_x)
        np.testing.assert_allclose(got.mean, mean, atol=1e-12)
        np.testing.assert_allclose(got.std, std, atol=1e-12)
        assert got.images == len(split.train_y) < 90
        assert not np.allclose(got.mean, N.training_stats(data).mean, atol=1e-6)


def test_constant_channel_and_records():
    x = np.zeros((2, 3, 3, 3), np.uint8)
    x[..., 1] = 255
    got = N.image_stats(x)
    assert got.mean == (0.0, 1.0, 0.0) and got.std == (N.MIN_STD,) * 3   # never divide by 0
    again = N.Normalization.from_json(json.loads(json.dumps(STATS.to_json())))
    assert again == STATS
    assert N.recorded({"network": "N"}) is N.CIFAR10                      # an old run.json
    assert N.recorded({"normalization": STATS.to_json()}) == STATS
    for bad in ({"mean": [0.5]}, {"mean": [0.5, 0.5], "std": [0.2]},
                {"mean": [0.5], "std": [0.0]}, {"mean": ["x"], "std": [1]}, [1, 2]):
        with pytest.raises(ArchError, match="normalization"):
            N.recorded({"normalization": bad}, "R/run.json")


def test_streamed_folder_sample(tmp_path):
    """A streamed folder of images of any size: an evenly spaced sample, each image resized
    and center-cropped as evaluation does (stream.center_crop), the same every time."""
    from archc.training import stream
    from archc.training.jax_loop import stats_of
    rng = np.random.default_rng(3)
    for split, n in (("train", 9), ("val", 2)):
        for c in ("x", "y"):
            os.makedirs(tmp_path / split / c)
            for j in range(n):
                h, w = rng.integers(10, 30, 2)
                img = rng.integers(0, 256, (h, w, 3)).astype(np.uint8)
                PIL.fromarray(img).save(tmp_path / split / c / f"{j}.png")
    fs = stream.open_folder(str(tmp_path), 8)
    assert fs.mode == "imagenet" and len(fs.train_paths) == 18
    idx = N.sample_indices(18, 5)
    assert idx.tolist() == [0, 3, 7, 10, 14]                  # evenly spaced, distinct
    crops = np.stack([stream.center_crop(stream.load(fs.train_paths[i]), 8) for i in idx])
    got = N.folder_stats(fs.train_paths, fs.mode, 8, limit=5, threads=2)
    mean, std = numpy_stats(crops)
    np.testing.assert_allclose(got.mean, mean, atol=1e-12)
    np.testing.assert_allclose(got.std, std, atol=1e-12)
    assert got.images == 5 and "sample" in got.source and "18" in got.source
    assert N.folder_stats(fs.train_paths, fs.mode, 8, limit=5, threads=1) == got
    lines = []
    whole = stats_of(fs, 8, lines.append)                    # what train() computes
    assert whole.images == 18 and whole.source == "training split"
    assert lines == ["normalisation: decoding 18 of 18 training images for their mean and std"]
    all_crops = np.stack([stream.center_crop(stream.load(p), 8) for p in fs.train_paths])
    np.testing.assert_allclose(whole.mean, numpy_stats(all_crops)[0], atol=1e-12)


@pytest.mark.skipif(not os.path.exists(PACK), reason="the CIFAR-10 pack is not at ../shared")
def test_cifar10_pack_gives_the_fallback_constants():
    """recipe.CIFAR10_MEAN/STD are the pack's training-split statistics (its README, and
    tests/test_train_data.py::test_cifar10_pack): computed here from the same cached load."""
    from archc.training.recipe import CIFAR10_MEAN, CIFAR10_STD
    got = N.training_stats(load_images(PACK))
    assert got.images == 50000
    np.testing.assert_allclose(got.mean, CIFAR10_MEAN, atol=1e-7)
    np.testing.assert_allclose(got.std, CIFAR10_STD, atol=1e-7)


# ---- the loops normalise with the statistics given ----------------------------------------
def test_jax_steps_normalise_with_the_given_statistics():
    """The network's input inside the jitted train and eval steps is (x - 255 mean) /
    (255 std) of the statistics passed to the Trainer (seen through the transform hook)."""
    jax = pytest.importorskip("jax")
    from archc.training.jax_loop import Trainer
    from archc.training.recipe import Recipe

    import archc
    seen = []

    def transform(params, x):
        jax.debug.callback(lambda v: seen.append(np.asarray(v)), x)
        return params, x
    net = archc.load_source(TINY)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (4, 8, 8, 3)).astype(np.uint8)
    y = np.array([0, 1, 0, 1], np.int32)
    t = Trainer(net, Recipe(epochs=1, batch_size=4, augment=False), 1, 4, norm=STATS,
                transform=transform)
    state = t.place.put(t.init_state)
    state, _ = t.train_on(state, t.zeros(), t.rest, *t.place.put((x, y)))
    t.eval_on(state, t.zeros(), t.rest, *t.place.put((x, y, np.ones(4, bool))))
    jax.effects_barrier()
    assert len(seen) == 2
    for got in seen:
        np.testing.assert_allclose(got, normalised(x, STATS), rtol=1e-6, atol=1e-6)


@pytest.mark.slow   # a training run
def test_torch_loop_normalises_with_the_given_statistics():
    torch = pytest.importorskip("torch")
    from archc.training.recipe import Recipe
    from archc.training.torch_loop import TorchLoop

    import archc
    net = archc.load_source(TINY)
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (8, 8, 8, 3)).astype(np.uint8)
    y = (np.arange(8) % 2).astype(np.int32)
    data = ImageData(x, y, x[:4], y[:4], ("a", "b"), "synthetic")
    loop = TorchLoop(net, data, Recipe(epochs=1, batch_size=4, augment=False), 2, None, "cpu",
                     norm=STATS)
    seen = []
    loop.model.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    loop.begin_epoch(1)
    loop.step()
    first = x[loop.order[:4].numpy()]
    np.testing.assert_allclose(seen[0].numpy(), normalised(first, STATS).transpose(0, 3, 1, 2),
                               rtol=1e-6, atol=1e-6)
    loop.evaluate()
    np.testing.assert_allclose(seen[1].numpy(), normalised(x[:4], STATS).transpose(0, 3, 1, 2),
                               rtol=1e-6, atol=1e-6)
    assert torch.is_tensor(loop.mean)


# ---- a run records them, and resumes with what it recorded ----------------------------------
@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("norm")
    make_data(str(root / "data"))
    (root / "tiny.arch").write_text(TINY)
    return root


def _metadata(path):
    from safetensors import safe_open
    with safe_open(str(path), "np") as f:
        return json.loads(f.metadata()["normalization"])


@pytest.mark.slow   # training runs
def test_cli_run_records_and_prints_the_statistics(folder, tmp_path):
    """archc train on an image folder, 8 training images held out: run.json, summary.json and
    model.safetensors' metadata hold the remaining 24 images' statistics; the log says so."""
    out = tmp_path / "run"
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-m", "archc", "train", str(folder / "tiny.arch"),
                           "--data", str(folder / "data"), "--epochs", "1", "--batch-size", "8",
                           "--val-split", "8", "--no-cache", "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    split = load_images(str(folder / "data"), cache=False).holdout(8, seed=0)
    want = N.image_stats(split.train_x)
    run = json.loads((out / "run.json").read_text())
    assert run["normalization"] == want.to_json()
    assert run["normalization"]["images"] == 24 == run["data"]["train"]
    assert run["normalization"]["from"] == "training split"
    assert json.loads((out / "summary.json").read_text())["normalization"] == want.to_json()
    assert _metadata(out / "model.safetensors") == want.to_json()
    assert f"normalising inputs with {want.describe()}" in proc.stdout


class Stop(Exception):
    pass


@pytest.mark.slow   # training runs
def test_resume_uses_the_recorded_statistics(folder, tmp_path):
    """A run stopped after epoch 1 of 2 resumes with the statistics its run.json records
    (edited here: the recorded ones win over recomputing), and a run.json without any (as
    written before they were recorded) resumes with the CIFAR-10 fallback."""
    pytest.importorskip("jax")
    import archc

    def stop_after_epoch_1(line):
        if line.startswith("epoch 1/2"):
            raise Stop

    first = tmp_path / "first"
    args = (str(folder / "tiny.arch"), str(folder / "data"))
    with pytest.raises(Stop):
        archc.train(*args, {"epochs": 2, "batch_size": 8}, out=str(first), progress=False,
                    cache=False, log=stop_after_epoch_1)
    run = json.loads((first / "run.json").read_text())
    assert run["normalization"]["images"] == 32
    old = tmp_path / "old"
    shutil.copytree(first, old)
    run["normalization"] = STATS.to_json()
    (first / "run.json").write_text(json.dumps(run))
    del run["normalization"]
    (old / "run.json").write_text(json.dumps(run))
    for out, want in ((first, STATS), (old, N.CIFAR10)):
        lines = []
        result = archc.train(*args, out=str(out), resume=True, progress=False, cache=False,
                             log=lines.append)
        assert f"resuming {out} after epoch 1 of 2" in lines
        assert f"normalising inputs with {want.describe()}" in lines
        assert result["normalization"] == want.to_json() and result["epochs"] == 2
        assert _metadata(out / "model.safetensors") == want.to_json()
        saved = json.loads((out / "run.json").read_text())    # run.json is not rewritten
        assert saved.get("normalization") == (None if want is N.CIFAR10 else want.to_json())
