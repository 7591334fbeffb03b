"""The streaming input pipeline of `archc train` (JAX): data sets that do not fit in memory.

Built on Grain (`grain`, Google's data-loading library for JAX: deterministic, random-access
`MapDataset`s, worker processes through `mp_prefetch`, bounded prefetch buffers), chosen over
tf.data (pulls in TensorFlow) and torch's DataLoader (pulls in torch, which the JAX backend
does not need). Images are read and decoded on the host, by `--loader-workers` processes (and
Grain's reading threads), a bounded number of batches ahead of the device; only file paths
and labels are held for the whole data set.

Two ways of shaping images:
  - "fixed": every image already has the network's input size (CIFAR-style folders). Images
    go to the device as they are and the jitted step crops and flips them there, exactly as
    the in-memory path does: same data order, same augmentation, same trajectory.
  - "imagenet": images of any size (ImageNet's train/<class>/*.JPEG, val/<class>/*). Training:
    random-resized crop (scale 0.08-1, aspect 3/4-4/3) to the input size and a horizontal
    flip, drawn from (seed, epoch, image); evaluation: resize the shorter side to 256/224 of
    the input size, center crop (seed 002 sec. 4: resize 256, center-crop 224).

Each epoch's order is the in-memory loop's (Trainer.order, fold_in(seed, epoch)); in a
multi-host run each process reads only its own rows of every global batch.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from archc.compiler import ArchError

from .data import IMAGE_SUFFIXES, LAYOUT_HINT, _read_folder, _reader, _test_name
from .decode import Budget, decode, max_decoded_bytes, read_file
from .options import option

MODES = ("auto", "on", "off")
EVAL_RESIZE = 256 / 224  # seed 002 sec. 4
SAMPLE = 32  # image headers read to decide the shape mode and estimate the decoded size


@dataclass(frozen=True)
class FolderSet:
    """An image folder as file paths and labels (what fingerprint() and the loop need)."""
    train_paths: tuple[str, ...]
    train_y: np.ndarray
    test_paths: tuple[str, ...]
    test_y: np.ndarray
    classes: tuple[str, ...]
    source: str
    mode: str  # "fixed" or "imagenet"
    per_class: tuple = (None, None)
    holdout_n: int | None = None

    def describe(self) -> str:
        return (f"{os.path.basename(self.source.rstrip('/'))}: {len(self.train_y)} train / "
                f"{len(self.test_y)} test images, {len(self.classes)} classes, streamed "
                f"({self.mode})")


def _listing(root: str, split: str, classes=None):
    base = os.path.join(root, split)
    found = sorted(c for c in os.listdir(base) if os.path.isdir(os.path.join(base, c))) \
        if os.path.isdir(base) else []
    classes = tuple(found) if classes is None else classes
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise ArchError(f"{root}: {split} classes {unknown[:5]} have no train images")
    paths, labels = [], []
    for i, c in enumerate(classes):
        d = os.path.join(base, c)
        if not os.path.isdir(d):
            continue
        for name in sorted(os.listdir(d)):
            if name.lower().endswith(IMAGE_SUFFIXES):
                paths.append(os.path.join(d, name))
                labels.append(i)
    if not paths:
        raise ArchError(f"{root}: no {split} images found", hint=LAYOUT_HINT)
    return tuple(paths), np.asarray(labels, np.int32), classes


def _header_size(path: str) -> tuple[int, int]:
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as im:
            return im.size
    except (UnidentifiedImageError, OSError) as exc:
        raise ArchError(f"cannot read image {path}: {exc}") from None


def open_folder(root: str, size: int) -> FolderSet:
    """List an image folder (train/<class>/*, test/ or val/<class>/*) without decoding it."""
    if not _is_image_folder(root):
        raise ArchError(f"{root}: streaming reads image folders (train/<class>/*), and this "
                        "is not one", hint="CIFAR binaries, tar archives and Tiny ImageNet "
                        f"fit in memory: use {option('stream', 'off')} (the default decides by "
                        "itself)")
    tp, ty, classes = _listing(root, "train")
    vp, vy, _ = _listing(root, _test_name(root), classes)
    sizes = {_header_size(p) for p in _sample(tp + vp)}
    mode = "fixed" if sizes == {(size, size)} else "imagenet"
    return FolderSet(tp, ty, vp, vy, classes, os.path.abspath(root), mode)


def _is_image_folder(path: str) -> bool:
    """A plain image folder (train/<class>/*), not CIFAR binaries or Tiny ImageNet."""
    return os.path.isdir(path) and _reader(path) is _read_folder


def _sample(paths):
    step = max(1, len(paths) // SAMPLE)
    return paths[::step][:SAMPLE]


def should_stream(path: str, mode: str, size: int) -> bool:
    """--stream auto: stream an image folder whose images differ from the network's input
    size, or whose decoded size (estimated from a sample of headers) exceeds the in-memory
    limit ($ARCHC_MAX_DATA_BYTES) or half the device memory."""
    if mode not in MODES:
        raise ArchError(f"{option('stream', mode)}: expected one of {', '.join(MODES)}")
    if mode != "auto":
        return mode == "on"
    if not _is_image_folder(path):
        return False
    fs_train, _, classes = _listing(path, "train")
    fs_test, _, _ = _listing(path, _test_name(path), classes)
    paths = fs_train + fs_test
    sizes = [_header_size(p) for p in _sample(paths)]
    if any(s != (size, size) for s in sizes):
        return True
    estimate = len(paths) * size * size * 3
    return estimate > min(max_decoded_bytes(), device_bytes() // 2)


def device_bytes() -> int:
    """The first device's memory (bytes) where JAX reports it; CPU: no limit."""
    import jax
    stats = jax.local_devices()[0].memory_stats() or {}
    return int(stats.get("bytes_limit") or 2**62)


# ---- reading one image (runs in Grain's threads and worker processes) -----------------------
def load(path: str) -> np.ndarray:
    return decode(read_file(path), path, Budget())


def random_resized_crop(img: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """torchvision's RandomResizedCrop(size, scale=(0.08, 1), ratio=(3/4, 4/3)) and a flip."""
    from PIL import Image
    h, w = img.shape[:2]
    area = h * w
    for _ in range(10):
        target = area * rng.uniform(0.08, 1.0)
        ratio = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        cw, ch = round(np.sqrt(target * ratio)), round(np.sqrt(target / ratio))
        if 0 < cw <= w and 0 < ch <= h:
            top, left = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
            break
    else:  # the fallback: a center crop of the whole image at a clamped ratio
        r = w / h
        cw, ch = (w, round(w / (4 / 3))) if r > 4 / 3 else (
            (round(h * 3 / 4), h) if r < 3 / 4 else (w, h))
        top, left = (h - ch) // 2, (w - cw) // 2
    crop = Image.fromarray(img[top:top + ch, left:left + cw]).resize((size, size),
                                                                     Image.BILINEAR)
    out = np.asarray(crop)
    return out[:, ::-1] if rng.random() < 0.5 else out


def center_crop(img: np.ndarray, size: int) -> np.ndarray:
    """Resize the shorter side to size*256/224, then the central size x size."""
    from PIL import Image
    h, w = img.shape[:2]
    short = round(size * EVAL_RESIZE)
    nh, nw = (short, max(short, round(w * short / h))) if h <= w else \
        (max(short, round(h * short / w)), short)
    im = np.asarray(Image.fromarray(img).resize((nw, nh), Image.BILINEAR))
    top, left = (nh - size) // 2, (nw - size) // 2
    return im[top:top + size, left:left + size]


class _Item:
    """A picklable per-record transform (Grain sends it to its worker processes)."""

    def __init__(self, paths, labels, mode, size, train, seed, epoch):
        self.paths, self.labels, self.mode, self.size = paths, labels, mode, size
        self.train, self.seed, self.epoch = train, seed, epoch

    def __call__(self, index: int):
        index = int(index)
        img = load(self.paths[index])
        if self.mode == "imagenet":
            if self.train:
                rng = np.random.default_rng((self.seed, self.epoch, index))
                img = random_resized_crop(img, self.size, rng)
            else:
                img = center_crop(img, self.size)
        elif img.shape[:2] != (self.size, self.size):
            raise ArchError(f"image {self.paths[index]} is {img.shape[1]}x{img.shape[0]}, not "
                            f"{self.size}x{self.size} like the rest of the data set")
        return {"x": np.ascontiguousarray(img, np.uint8), "y": np.int32(self.labels[index])}


def batches(indices, paths, labels, mode: str, size: int, batch: int, train: bool,
            seed: int = 0, epoch: int = 0, workers: int = 0, threads: int = 4):
    """An iterator of {"x": B x S x S x 3 uint8, "y": B int32} batches of `indices` in order
    (the last partial batch is kept; the caller pads it). close() it when done: that stops
    the worker processes and frees their shared memory."""
    import grain
    ds = grain.MapDataset.source(np.asarray(indices, np.int64)).map(
        _Item(paths, labels, mode, size, train, seed, epoch))
    ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=threads,
                                              prefetch_buffer_size=2 * batch))
    ds = ds.batch(batch)
    if workers:
        from absl import flags  # Grain reads absl flags in its workers; archc parses none
        if not flags.FLAGS.is_parsed():
            flags.FLAGS.mark_as_parsed()
        ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers,
                                                         per_worker_buffer_size=2))
    return iter(ds)
