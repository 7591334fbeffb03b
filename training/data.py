"""Image-classification data sets for `archc train`: read once, decode once, cache as .npy.

Three sources are understood, each giving uint8 NHWC images and int32 labels for a `train`
and a `test` split:

  - an image folder: `DIR/train/<class>/*.{jpg,jpeg,png}` and `DIR/test/<class>/*` (classes
    are the sorted sub-directory names, numbered from 0: CIFAR-10's official order);
  - a tar archive of that layout (`.tar`, `.tar.gz`, `.tar.xz`, `.tar.bz2`), read as a stream
    without extracting anything to disk (the pack in ../shared/data/cifar10/ is one);
  - the official CIFAR-10 binary batches (`data_batch_1.bin` ... `test_batch.bin`, 3073 bytes
    a record), as a directory or inside the official `cifar-10-binary.tar.gz`;
  - the official CIFAR-100 binary version (train.bin, test.bin: cifar100.py), as a directory
    or inside `cifar-100-binary.tar.gz`, fine labels (coarse ones on request);
  - Tiny ImageNet's folder (wnids.txt, train/<wnid>/images/, val/ with val_annotations.txt:
    tiny_imagenet.py).

An image folder's test split may be called `val/` (ImageNet's layout) instead of `test/`.
`ImageData.holdout(n)` makes a validation split from the training images (Nguyen et al.'s
48,000 / 2,000).

Decoded arrays are cached in the user's cache folder, never next to the data unless asked
(`archc train --cache-dir DIR`; training/cache.py): a killed decode leaves nothing
half-written, and processes that load the same source at once decode it once.

Every read is bounded before it is done (training/decode.py): file and member sizes,
image dimensions and the total of decoded bytes; a tar stream is read only while its
uncompressed size stays within four times that total.

This module needs numpy and Pillow only; the training loops put the arrays on the device.
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import tarfile
from dataclasses import dataclass

import numpy as np

from archc.compiler import ArchError

from .cache import ARRAYS, CACHE_VERSION, decode_lock, fingerprint, load, save
from .cache import cache_dirs, user_cache  # noqa: F401 (their home before cache.py)
from .decode import (DECODED, MAX_FILE_BYTES, Budget, decode, read_file,
                     size_ok)
from .options import option

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")
CIFAR_BIN_TRAIN = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
CIFAR_BIN_TEST = ("test_batch.bin",)
LAYOUT_HINT = ("expected an image folder (train/<class>/*.jpg and test/<class>/*.jpg or "
               "val/<class>/*.jpg), a .tar/.tar.xz/.tar.gz of that layout, the CIFAR-10 binary "
               "batches (data_batch_1.bin ... test_batch.bin), CIFAR-100's binary version "
               "(train.bin, test.bin) or Tiny ImageNet's folder (wnids.txt, train/, val/)")


@dataclass(frozen=True)
class ImageData:
    """A train and a test split: images N x H x W x 3 uint8, labels N int32."""
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    classes: tuple[str, ...]
    source: str
    per_class: tuple = (None, None)  # (train, test) images per class of a subset()
    holdout_n: int | None = None  # the test split is this many held-out training images

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])

    def describe(self) -> str:
        h, w, c = self.image_shape
        return (f"{os.path.basename(self.source.rstrip('/'))}: {len(self.train_y)} train / "
                f"{len(self.test_y)} test images, {h}x{w}x{c}, {len(self.classes)} classes")

    def subset(self, train_per_class: int | None = None, test_per_class: int | None = None,
               seed: int = 0) -> "ImageData":
        """A class-balanced subset: `n` images of every class, drawn at random (fixed seed)."""
        tx, ty = _balanced(self.train_x, self.train_y, train_per_class, seed, "train")
        vx, vy = _balanced(self.test_x, self.test_y, test_per_class, seed + 1, "test")
        return ImageData(tx, ty, vx, vy, self.classes, self.source,
                         (train_per_class, test_per_class), self.holdout_n)

    def holdout(self, n: int | None, seed: int = 0) -> "ImageData":
        """Validation on `n` training images drawn at random (fixed seed), training on the
        rest; the original test split is set aside (Nguyen et al.: 48,000 / 2,000 of CIFAR)."""
        if n is None:
            return self
        total = len(self.train_y)
        if not 1 <= n < total:
            raise ArchError(f"{option('val_split', n)} must be between 1 and {total - 1}, the "
                            "training images less one")
        pick = np.zeros(total, bool)
        pick[np.random.default_rng(seed).choice(total, n, replace=False)] = True
        return ImageData(self.train_x[~pick], self.train_y[~pick], self.train_x[pick],
                         self.train_y[pick], self.classes, self.source, self.per_class, n)


def _balanced(x, y, per_class, seed, split):
    if per_class is None:
        return x, y
    if per_class < 1:
        raise ArchError(f"{option(split + '_per_class')} must be at least 1, not {per_class}")
    rng = np.random.default_rng(seed)
    picks = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        if len(idx) < per_class:
            raise ArchError(f"the {split} split has only {len(idx)} images of class {c}, "
                            f"fewer than the {per_class} asked for")
        picks.append(rng.choice(idx, per_class, replace=False))
    order = np.sort(np.concatenate(picks))
    return x[order], y[order]


# ---- reading the sources ---------------------------------------------------------------------
_MEMBER = re.compile(r"^(?:\./)?(?:[^/]+/)*?(train|test|val)/([^/]+)/([^/]+)$")


def _stack(items: dict, split: str, source: str, classes: tuple[str, ...]):
    """items: {(class, filename): HxWx3 array} -> (images, labels) in (class, name) order."""
    if not items:
        raise ArchError(f"{source}: no {split} images found", hint=LAYOUT_HINT)
    keys = sorted(items)
    first: dict = {}  # shape -> the first image (in sorted order) that has it
    for k in keys:
        first.setdefault(items[k].shape, k)
    if len(first) != 1:
        desc = ", ".join(f"{'x'.join(map(str, s))} ({'/'.join(k)})" for s, k in first.items())
        raise ArchError(f"{source}: images differ in size: {desc}",
                        hint="every image of a data set must have the same height and width")
    index = {c: i for i, c in enumerate(classes)}
    x = np.stack([items[k] for k in keys])
    y = np.array([index[k[0]] for k in keys], dtype=np.int32)
    return x, y


def _from_items(train: dict, test: dict, source: str) -> ImageData:
    classes = tuple(sorted({k[0] for k in train}))
    extra = sorted({k[0] for k in test} - set(classes))
    if extra:
        raise ArchError(f"{source}: test classes {extra} have no train images")
    tx, ty = _stack(train, "train", source, classes)
    vx, vy = _stack(test, "test", source, classes)
    return ImageData(tx, ty, vx, vy, classes, source)


def _test_name(root: str) -> str:
    """`test`, or `val` where only that exists (ImageNet's layout)."""
    if not os.path.isdir(os.path.join(root, "test")) and os.path.isdir(os.path.join(root, "val")):
        return "val"
    return "test"


def _read_folder(root: str) -> ImageData:
    splits, budget = {}, Budget()
    for split in ("train", "test"):
        base = os.path.join(root, split if split == "train" else _test_name(root))
        items = {}
        if os.path.isdir(base):
            for cls in sorted(os.listdir(base)):
                cdir = os.path.join(base, cls)
                if not os.path.isdir(cdir):
                    continue
                for name in sorted(os.listdir(cdir)):
                    if name.lower().endswith(IMAGE_SUFFIXES):
                        path = os.path.join(cdir, name)
                        items[(cls, name)] = decode(read_file(path), path, budget)
        splits[split] = items
    return _from_items(splits["train"], splits["test"], root)


def _cifar_records(blob: bytes, name: str):
    rec = 1 + 32 * 32 * 3
    if len(blob) % rec:
        raise ArchError(f"{name}: {len(blob)} bytes is not a whole number of CIFAR-10 records "
                        f"({rec} bytes each)")
    a = np.frombuffer(blob, np.uint8).reshape(-1, rec)
    labels = a[:, 0].astype(np.int32)
    if labels.max(initial=0) > 9:
        raise ArchError(f"{name}: label {labels.max()} is out of CIFAR-10's range 0..9")
    images = a[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def _from_cifar_bins(blobs: dict, source: str) -> ImageData:
    missing = [n for n in CIFAR_BIN_TRAIN + CIFAR_BIN_TEST if n not in blobs]
    if missing:
        raise ArchError(f"{source}: CIFAR-10 binary batches incomplete: missing {missing}")
    parts = {n: _cifar_records(blobs[n], n) for n in CIFAR_BIN_TRAIN + CIFAR_BIN_TEST}
    tx = np.concatenate([parts[n][0] for n in CIFAR_BIN_TRAIN])
    ty = np.concatenate([parts[n][1] for n in CIFAR_BIN_TRAIN])
    vx, vy = parts["test_batch.bin"]
    return ImageData(tx, ty, vx, vy, CIFAR10_CLASSES, source)


def _read_tar(path: str, coarse: bool = False) -> ImageData:
    train, test, bins, budget = {}, {}, {}, Budget()
    c100 = cifar100.FILES + tuple(cifar100.NAMES.values())
    stream_limit = 4 * budget.limit
    try:
        with tarfile.open(path, "r|*") as tar:  # a stream: nothing is extracted to disk
            for member in tar:
                where = f"{path}:{member.name}"
                if member.offset_data + member.size > stream_limit:
                    raise ArchError(f"{where}: the archive holds more than {stream_limit:,} "
                                    "bytes", hint="raise the limit with ARCHC_MAX_DATA_BYTES "
                                    "(a quarter of it)")
                if not member.isfile():
                    continue
                base = os.path.basename(member.name)
                is_bin = base in CIFAR_BIN_TRAIN + CIFAR_BIN_TEST + c100
                m = _MEMBER.match(member.name)
                if not is_bin and (not m or not base.lower().endswith(IMAGE_SUFFIXES)):
                    continue  # skipped unread
                size_ok(member.size, where)  # before reading: the header says how much
                blob = tar.extractfile(member).read(MAX_FILE_BYTES + 1)
                if is_bin:
                    budget.take(len(blob), where)
                    bins[base] = blob
                    continue
                split, cls, name = m.groups()
                (train if split == "train" else test)[(cls, name)] = decode(blob, where, budget)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ArchError(f"{path}: not a readable tar archive ({exc})", hint=LAYOUT_HINT) from None
    if any(n in bins for n in cifar100.FILES):
        return cifar100.from_blobs(bins, path, coarse)
    if coarse:
        raise _not_cifar100(path)
    if bins:
        return _from_cifar_bins(bins, path)
    return _from_items(train, test, path)


def _read_bin_dir(root: str) -> ImageData:
    blobs = {}
    for n in CIFAR_BIN_TRAIN + CIFAR_BIN_TEST:
        p = os.path.join(root, n)
        if os.path.isfile(p):
            blobs[n] = read_file(p)
    return _from_cifar_bins(blobs, root)


def _not_cifar100(path: str) -> ArchError:
    return ArchError(f"{path}: coarse labels are CIFAR-100's, and this is not CIFAR-100's "
                     "binary version (train.bin, test.bin)",
                     hint=f"drop {option('coarse_labels', True)}")


def _reader(path: str, coarse: bool = False):
    if os.path.isdir(path):
        c100 = cifar100.is_cifar100_dir(path)
        if c100:
            return lambda _: cifar100.read_dir(c100, coarse)
        if coarse:
            raise _not_cifar100(path)
        if tiny_imagenet.is_tiny_imagenet(path):
            return tiny_imagenet.read
        if os.path.isfile(os.path.join(path, "data_batch_1.bin")):
            return _read_bin_dir
        sub = os.path.join(path, "cifar-10-batches-bin")
        if os.path.isfile(os.path.join(sub, "data_batch_1.bin")):
            return lambda _: _read_bin_dir(sub)
        if os.path.isdir(os.path.join(path, "train")):
            return _read_folder
        raise ArchError(f"{path}: no train/ folder and no CIFAR-10 binary batches",
                        hint=LAYOUT_HINT)
    if os.path.isfile(path):
        if path.lower().endswith(TAR_SUFFIXES):
            return lambda p: _read_tar(p, coarse)
        raise ArchError(f"{path}: not a directory or a tar archive", hint=LAYOUT_HINT)
    if os.path.exists(path):
        raise ArchError(f"{path}: not a directory or a regular file", hint=LAYOUT_HINT)
    raise ArchError(f"{path}: no such file or directory", hint=LAYOUT_HINT)


from . import cifar100, tiny_imagenet  # noqa: E402 - they import ImageData from here


@contextlib.contextmanager
def _decode_progress(path: str, enabled: bool):
    """A progress bar counting the decoded images (tqdm, on a terminal only)."""
    bar = None
    if enabled and sys.stderr.isatty():
        try:
            from tqdm import tqdm
            bar = tqdm(desc=f"decoding {os.path.basename(path.rstrip(os.sep))}",
                       unit=" images", leave=False, dynamic_ncols=True)
        except ImportError:   # tqdm is in the `data` extra: without it, no bar
            pass
    if bar is None:
        yield
        return
    token = DECODED.set(bar.update)
    try:
        yield
    finally:
        DECODED.reset(token)
        bar.close()


def load_images(path: str, cache: bool = True, log=None, coarse: bool = False,
                progress: bool = True) -> ImageData:
    """Read the data set at `path` (see the module docstring), through the .npy cache.
    coarse: CIFAR-100's 20 coarse labels instead of its 100 fine ones. progress: a bar
    counts the decoded images (on a terminal, when `log` is given)."""
    path = os.path.expanduser(str(path))
    reader = _reader(path, coarse)
    meta = {"version": CACHE_VERSION, "source": os.path.abspath(path), **fingerprint(path)}
    if coarse:
        meta["labels"] = "coarse"

    if not cache:
        with _decode_progress(path, progress and log is not None):
            return reader(path)
    hit = _cached(path, meta)
    if hit is not None:
        return hit
    with decode_lock(path, log):
        hit = _cached(path, meta)  # decoded by the process that held the lock
        if hit is not None:
            return hit
        if log:
            log(f"decoding {path} once (cached as .npy afterwards)")
        with _decode_progress(path, progress and log is not None):
            data = reader(path)
        arrays = {a: getattr(data, a) for a in ARRAYS}
        for directory in cache_dirs(path):
            if save(directory, arrays, data.classes, meta):
                break
    return data


def _cached(path: str, meta: dict) -> ImageData | None:
    for directory in cache_dirs(path):
        hit = load(directory, meta)
        if hit is not None:
            arrays, classes = hit
            return ImageData(**arrays, classes=classes, source=meta["source"])
    return None
