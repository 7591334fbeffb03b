"""Input normalisation: the per-channel mean and standard deviation every image is normalised
with, (x / 255 - mean) / std, and where they come from. One source of truth for the JAX loop
(in memory and streamed), the torch loop, `archc inspect --se-activations` and compression.

  - in memory (ImageData): every image of the training split the run trains on (after
    --train-per-class and --val-split), every pixel, counted exactly (per-channel histograms
    of the uint8 values, a chunk of images at a time: no float copy of the data set);
  - streamed (stream.FolderSet): decoding every image would take as long as an epoch, so an
    evenly spaced, deterministic sample of at most SAMPLE_IMAGES training files, each decoded
    and shaped as evaluation shapes it (stream.center_crop for "imagenet" folders).

The statistics are recorded in the run's run.json ("normalization": mean, std, images,
from) and `--resume` uses the recorded ones. A run folder written before they were recorded
has none: it was trained with CIFAR10, the CIFAR-10 pack's training-split statistics that
every data set was normalised with until then, so that is what it resumes, inspects and
compresses with.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
from archc.compiler import ArchError

from .recipe import CIFAR10_MEAN, CIFAR10_STD

SAMPLE_IMAGES = 2000   # streamed data sets: at most this many training images are decoded
CHUNK_PIXELS = 1 << 22  # pixels counted at a time (a few MB of temporaries)
MIN_STD = 1.0 / 255     # a channel that never varies is divided by one grey level, not by 0


@dataclass(frozen=True)
class Normalization:
    """Per-channel mean and std in [0, 1] units; `images`: how many training images they were
    computed from (None for the fallback); `source`: from what, in words."""
    mean: tuple[float, ...]
    std: tuple[float, ...]
    images: int | None
    source: str

    def to_json(self) -> dict:
        """What run.json records under "normalization"."""
        return {"mean": [float(m) for m in self.mean], "std": [float(s) for s in self.std],
                "images": self.images, "from": self.source}

    @classmethod
    def from_json(cls, obj, where: str = "run.json") -> Normalization:
        try:
            mean = tuple(float(m) for m in obj["mean"])
            std = tuple(float(s) for s in obj["std"])
            images = obj.get("images")
            source = str(obj.get("from", "recorded"))
        except (KeyError, TypeError, ValueError, AttributeError):
            raise ArchError(f"{where}: \"normalization\" is not a mean/std record") from None
        if not (len(mean) == len(std) >= 1 and all(map(math.isfinite, mean + std))
                and min(std) > 0):
            raise ArchError(f"{where}: \"normalization\" holds an unusable mean/std "
                            f"({list(mean)} / {list(std)})")
        return cls(mean, std, images if isinstance(images, int) else None, source)

    def scaled(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std) in uint8 units (x 255), float32: what the loops subtract and divide."""
        return (np.asarray(self.mean, np.float32) * np.float32(255),
                np.asarray(self.std, np.float32) * np.float32(255))

    def describe(self) -> str:
        def fmt(v):
            return "(" + ", ".join(f"{x:.4f}" for x in v) + ")"
        count = f", {self.images:,} images" if self.images is not None else ""
        return f"mean {fmt(self.mean)} std {fmt(self.std)} ({self.source}{count})"


# The statistics of runs written before they were recorded (recipe.py: the CIFAR-10 pack's).
CIFAR10 = Normalization(CIFAR10_MEAN, CIFAR10_STD, None,
                        "CIFAR-10 statistics, the fallback for a run that recorded none")


def recorded(run: dict | None, where: str = "run.json") -> Normalization:
    """The statistics a run.json records, or the CIFAR-10 fallback where it records none (a
    run folder written before they were recorded was trained with those)."""
    found = (run or {}).get("normalization")
    return CIFAR10 if found is None else Normalization.from_json(found, where)


class _Counts:
    """Per-channel histograms of uint8 values: exact counts, summarised in float64."""

    def __init__(self):
        self.hist: np.ndarray | None = None
        self.images = 0

    def add(self, x: np.ndarray) -> None:
        """x: uint8, ... x C (one image H x W x C, or a batch N x H x W x C)."""
        if x.dtype != np.uint8:
            raise ValueError(f"expected uint8 images, not {x.dtype}")
        c = x.shape[-1]
        if self.hist is None:
            self.hist = np.zeros((c, 256), np.int64)
        flat = x.reshape(-1, c)
        for s in range(0, len(flat), CHUNK_PIXELS):
            part = flat[s:s + CHUNK_PIXELS]
            for k in range(c):
                self.hist[k] += np.bincount(part[:, k], minlength=256)

    def result(self, source: str) -> Normalization:
        if self.hist is None or not self.hist.sum():
            raise ArchError("no training images to compute the normalisation statistics from")
        v = np.arange(256, dtype=np.float64) / 255
        n = self.hist.sum(1).astype(np.float64)
        mean = (self.hist * v).sum(1) / n
        var = (self.hist * (v[None, :] - mean[:, None]) ** 2).sum(1) / n  # population variance
        std = np.maximum(np.sqrt(var), MIN_STD)
        return Normalization(tuple(float(m) for m in mean), tuple(float(s) for s in std),
                             self.images, source)


def image_stats(images: np.ndarray, chunk: int = 1024) -> Normalization:
    """Mean and std per channel of uint8 N x H x W x C `images` (every pixel), `chunk`
    images at a time."""
    counts = _Counts()
    for s in range(0, len(images), chunk):
        counts.add(np.asarray(images[s:s + chunk]))
    counts.images = len(images)
    return counts.result("training split")


def sample_indices(n: int, limit: int = SAMPLE_IMAGES) -> np.ndarray:
    """min(n, limit) distinct indices of 0..n-1, evenly spaced, always the same."""
    k = min(n, limit)
    return (np.arange(k, dtype=np.int64) * n) // max(k, 1)


def folder_stats(paths, mode: str, size: int, limit: int = SAMPLE_IMAGES,
                 threads: int | None = None) -> Normalization:
    """Mean and std per channel of an evenly spaced sample of at most `limit` of `paths` (a
    streamed training split), each decoded and shaped as evaluation does: "imagenet" images
    resized and center-cropped (stream.center_crop), "fixed" ones as they are."""
    from concurrent.futures import ThreadPoolExecutor

    from . import stream

    def shaped(i):
        img = stream.load(paths[i])
        return stream.center_crop(img, size) if mode == "imagenet" else img

    idx = sample_indices(len(paths), limit)
    counts = _Counts()
    workers = threads or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers) as pool:   # decoding releases the GIL
        for img in pool.map(shaped, idx.tolist()):
            counts.add(img)
    counts.images = len(idx)
    whole = len(idx) == len(paths)
    return counts.result("training split" if whole else
                         f"evenly spaced sample of the training split's {len(paths):,} images")


def training_stats(data, size: int | None = None) -> Normalization:
    """The statistics of the training split `data` trains on: an ImageData (every image) or
    a stream.FolderSet (a sample; `size`: the network's input size)."""
    from .stream import FolderSet
    if isinstance(data, FolderSet):
        return folder_stats(data.train_paths, data.mode, size)
    return image_stats(data.train_x)
