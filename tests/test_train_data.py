"""Data loading for `archc train` (training/data.py): the three sources, the .npy cache, the
class-balanced subset, and clear errors for bad input."""
from __future__ import annotations

import io
import os
import sys
import tarfile

import numpy as np
import pytest

from archc.training import data as D
from archc.compiler import ArchError

PIL = pytest.importorskip("PIL.Image")

PACK = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "cifar10",
                    "cifar10-jpeg.tar.xz")


def _png(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    PIL.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def _images(rng, n, h=8, w=8):
    return rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)


@pytest.fixture
def folder(tmp_path):
    """train/{cat,dog}/ with 3 PNGs each, test/ with 2 each (PNG: lossless, exact pixels)."""
    rng = np.random.default_rng(0)
    root = tmp_path / "pets"
    want = {}
    for split, n in (("train", 3), ("test", 2)):
        for cls in ("dog", "cat"):  # created out of order: labels must follow sorted names
            d = root / split / cls
            d.mkdir(parents=True)
            for i, img in enumerate(_images(rng, n)):
                (d / f"{i:04d}.png").write_bytes(_png(img))
                want[(split, cls, i)] = img
    return root, want


def _check(data, want):
    assert data.classes == ("cat", "dog")
    assert data.train_x.shape == (6, 8, 8, 3) and data.train_x.dtype == np.uint8
    assert data.test_x.shape == (4, 8, 8, 3)
    assert data.train_y.tolist() == [0, 0, 0, 1, 1, 1] and data.train_y.dtype == np.int32
    for k, cls in enumerate(("cat", "dog")):
        for i in range(3):
            np.testing.assert_array_equal(data.train_x[3 * k + i], want[("train", cls, i)])
        for i in range(2):
            np.testing.assert_array_equal(data.test_x[2 * k + i], want[("test", cls, i)])


def test_image_folder_and_its_cache(folder, tmp_path_factory, monkeypatch):
    """The decoded arrays are cached in the user's cache folder ($ARCHC_CACHE_DIR here),
    nothing is written next to the data."""
    root, want = folder
    user = tmp_path_factory.mktemp("user-cache")
    monkeypatch.setenv("ARCHC_CACHE_DIR", str(user))
    beside = sorted(os.listdir(root.parent))
    data = D.load_images(str(root))
    _check(data, want)
    assert sorted(os.listdir(root.parent)) == beside
    [cache] = D.cache_dirs(str(root))
    assert os.path.dirname(cache) == str(user)
    assert sorted(os.listdir(cache)) == ["meta.json", "test_x.npy", "test_y.npy", "train_x.npy",
                                         "train_y.npy"]
    # a cache hit reads the .npy files: prove it by altering one (same size and mtime source)
    x = np.load(os.path.join(cache, "train_x.npy"))
    x[0, 0, 0, 0] ^= 0xFF
    np.save(os.path.join(cache, "train_x.npy"), x)
    assert D.load_images(str(root)).train_x[0, 0, 0, 0] == x[0, 0, 0, 0]
    # changing the source invalidates the cache
    (root / "train" / "cat" / "0000.png").write_bytes(_png(want[("train", "cat", 1)]))
    np.testing.assert_array_equal(D.load_images(str(root)).train_x[0], want[("train", "cat", 1)])


def test_tar_stream_equals_folder(folder, tmp_path):
    root, want = folder
    for suffix, mode in ((".tar.xz", "w:xz"), (".tar.gz", "w:gz"), (".tar", "w")):
        path = tmp_path / f"pets{suffix}"
        with tarfile.open(path, mode) as tar:
            for split in ("train", "test"):
                tar.add(root / split, arcname=split)
        _check(D.load_images(str(path), cache=False), want)


def _cifar_bins(folder, rng, per_batch=4):
    records = {}
    for name in D.CIFAR_BIN_TRAIN + D.CIFAR_BIN_TEST:
        labels = rng.integers(0, 10, per_batch, dtype=np.uint8)
        chw = rng.integers(0, 256, (per_batch, 3, 32, 32), dtype=np.uint8)
        blob = np.concatenate([labels[:, None], chw.reshape(per_batch, -1)], axis=1).tobytes()
        (folder / name).write_bytes(blob)
        records[name] = (labels, chw)
    return records


def test_cifar_binary_batches(tmp_path):
    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    rec = _cifar_bins(folder, rng)
    for path in (folder, tmp_path):  # the batch folder, or the folder holding it
        data = D.load_images(str(path), cache=False)
        assert data.classes == D.CIFAR10_CLASSES
        assert data.train_x.shape == (20, 32, 32, 3) and data.test_x.shape == (4, 32, 32, 3)
        labels, chw = rec["data_batch_2.bin"]
        np.testing.assert_array_equal(data.train_y[4:8], labels)
        np.testing.assert_array_equal(data.train_x[4:8], chw.transpose(0, 2, 3, 1))
        np.testing.assert_array_equal(data.test_x, rec["test_batch.bin"][1].transpose(0, 2, 3, 1))
    with tarfile.open(tmp_path / "cifar-10-binary.tar.gz", "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-bin")
    data = D.load_images(str(tmp_path / "cifar-10-binary.tar.gz"), cache=False)
    np.testing.assert_array_equal(data.test_y, rec["test_batch.bin"][0])


def test_balanced_subset(folder):
    data = D.load_images(str(folder[0]), cache=False)
    sub = data.subset(2, 1, seed=3)
    assert np.bincount(sub.train_y).tolist() == [2, 2]
    assert np.bincount(sub.test_y).tolist() == [1, 1]
    again = data.subset(2, 1, seed=3)
    np.testing.assert_array_equal(sub.train_x, again.train_x)
    with pytest.raises(ArchError, match="only 3 images of class 0"):
        data.subset(4)


@pytest.mark.parametrize("make, message", [
    (lambda p: p, "no such file or directory"),
    (lambda p: (p.mkdir(), p)[1], "no train/ folder and no CIFAR-10 binary batches"),
    (lambda p: (p.write_text("x"), p)[1], "not a directory or a tar archive"),
])
def test_bad_paths(tmp_path, make, message):
    with pytest.raises(ArchError, match=message) as err:
        D.load_images(str(make(tmp_path / "data")))
    assert "image folder" in err.value.hint


def test_bad_contents(tmp_path, folder):
    root, want = folder
    bad = root / "train" / "cat" / "0005.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(ArchError, match="cannot decode image .*0005.png"):
        D.load_images(str(root), cache=False)
    bad.write_bytes(_png(np.zeros((9, 8, 3), np.uint8)))
    with pytest.raises(ArchError, match="images differ in size: 8x8x3 .*9x8x3"):
        D.load_images(str(root), cache=False)
    broken = tmp_path / "broken.tar.xz"
    broken.write_bytes(b"\xfd7zXZ\x00garbage")
    with pytest.raises(ArchError, match="not a readable tar archive"):
        D.load_images(str(broken), cache=False)
    bins = tmp_path / "bins"
    bins.mkdir()
    _cifar_bins(bins, np.random.default_rng(2))
    (bins / "test_batch.bin").write_bytes(b"\x00" * 3000)
    with pytest.raises(ArchError, match="not a whole number of CIFAR-10 records"):
        D.load_images(str(bins), cache=False)


def test_read_only_folder_caches_elsewhere(folder, tmp_path, monkeypatch):
    root, _ = folder
    monkeypatch.setenv("ARCHC_CACHE_DIR", str(tmp_path / "elsewhere"))
    parent = root.parent
    os.chmod(parent, 0o555)
    try:
        D.load_images(str(root))
    finally:
        os.chmod(parent, 0o755)
    assert not os.path.exists(str(root) + ".archc-cache")
    cache = os.path.basename(D.cache_dirs(str(root))[-1])
    assert sorted(os.listdir(tmp_path / "elsewhere")) == [cache, cache + ".lock"]


def test_loads_at_once_decode_once(folder, tmp_path, monkeypatch):
    """Two loads of one source at the same time (the processes of a data-parallel run, runs
    started together): one decodes, the other waits on the lock and reads its cache."""
    import threading
    import time
    root, want = folder
    monkeypatch.setenv("ARCHC_CACHE_DIR", str(tmp_path / "cache"))
    decodes, messages = [], []
    slow = D._read_folder

    def reader(path):
        decodes.append(path)
        time.sleep(0.5)   # long enough for the second load to find the lock taken
        return slow(path)
    monkeypatch.setattr(D, "_read_folder", reader)
    got = [None, None]

    def load(i):
        got[i] = D.load_images(str(root), log=messages.append)
    threads = [threading.Thread(target=load, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
        time.sleep(0.1)
    for t in threads:
        t.join(30)
    assert len(decodes) == 1, decodes
    assert any(m.startswith("waiting for another process that is decoding") for m in messages)
    for data in got:
        _check(data, want)


@pytest.mark.skipif(not os.path.exists(PACK), reason="the CIFAR-10 pack is not at ../shared")
def test_cifar10_pack():
    """The shared pack (its README): 50,000 / 10,000 images, official label order, and the
    training split's per-channel mean and std as the README prints them."""
    data = D.load_images(PACK)
    assert data.classes == D.CIFAR10_CLASSES
    assert data.train_x.shape == (50000, 32, 32, 3) and data.test_x.shape == (10000, 32, 32, 3)
    assert np.bincount(data.train_y).tolist() == [5000] * 10
    assert np.bincount(data.test_y).tolist() == [1000] * 10
    pixels = data.train_x.reshape(-1, 3).astype(np.float64) / 255
    np.testing.assert_allclose(pixels.mean(0), [0.49125038, 0.48209027, 0.44652094], atol=1e-7)
    np.testing.assert_allclose(pixels.std(0), [0.24523161, 0.24278155, 0.26062877], atol=1e-7)


@pytest.mark.skipif(os.fsencode("\udcff") != b"\xff", reason="the file system names are not bytes")
def test_a_folder_name_that_is_not_utf8_is_cached(folder, tmp_path, monkeypatch):
    """A data set whose folder name is not UTF-8 (byte 0xff): keyed, locked and cached like
    any other (the cache key hashed the name as UTF-8, an internal error)."""
    root, want = folder
    odd = str(tmp_path / "pets\udcff")
    os.rename(root, odd)
    monkeypatch.setenv("ARCHC_CACHE_DIR", str(tmp_path / "cache"))
    messages = []
    _check(D.load_images(odd, log=messages.append), want)
    assert os.path.isdir(D.cache_dirs(odd)[0]) and not os.path.exists(odd + ".archc-cache")
    _check(D.load_images(odd, log=messages.append), want)   # read from the cache
    assert sum(m.startswith("decoding") for m in messages) == 1


def test_cache_folder_follows_xdg_and_cache_dir(folder, tmp_path, monkeypatch):
    """Without $ARCHC_CACHE_DIR the cache goes to $XDG_CACHE_HOME/archc/data; `--cache-dir`
    (archc train, archc compress) chooses the folder, next to the data only when asked."""
    from archc import _cli
    root, _ = folder
    monkeypatch.delenv("ARCHC_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    [cache] = D.cache_dirs(str(root))
    assert os.path.dirname(cache) == str(tmp_path / "xdg" / "archc" / "data")
    args = _cli.make_parser().parse_args(
        ["train", "se_sqnxt", "--data", str(root), "--cache-dir", str(root.parent)])
    _cli.use_cache_dir(args)   # sets $ARCHC_CACHE_DIR for this process (monkeypatch undoes it)
    assert os.environ["ARCHC_CACHE_DIR"] == str(root.parent)
    D.load_images(str(root))
    [cache] = D.cache_dirs(str(root))
    assert os.path.dirname(cache) == str(root.parent) and os.path.isfile(
        os.path.join(cache, "meta.json"))


def test_decoding_counts_every_image_and_shows_a_bar_on_a_terminal(folder, monkeypatch, capsys):
    """Every decoded image ticks the decoding progress (10 here: 6 train, 4 test); on a
    terminal, load_images shows it as a tqdm bar on stderr; elsewhere, or with
    progress=False, it prints nothing."""
    from archc.training.decode import DECODED
    root, _ = folder
    ticks = []
    token = DECODED.set(ticks.append)
    try:
        D.load_images(str(root), cache=False)
    finally:
        DECODED.reset(token)
    assert ticks == [1] * 10
    capsys.readouterr()
    D.load_images(str(root), cache=False, log=lambda m: None)          # not a terminal
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    D.load_images(str(root), cache=False, log=lambda m: None, progress=False)
    assert capsys.readouterr().err == ""
    D.load_images(str(root), cache=False, log=lambda m: None)
    assert "decoding pets" in capsys.readouterr().err
