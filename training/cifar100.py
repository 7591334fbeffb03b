"""CIFAR-100, the official binary version (`cifar-100-binary.tar.gz`: train.bin, test.bin,
fine_label_names.txt, coarse_label_names.txt), for `archc train` (training/data.py).

A record is 3074 bytes: the coarse label (0..19), the fine label (0..99), then 32x32x3
pixels, channel-major (all red, all green, all blue), as in CIFAR-10. The fine labels (100
classes) are the default; `coarse=True` trains on the 20 super-classes (seed 003 uses the fine
ones). Class names come from the *_label_names.txt files when present, else are numbers.
"""
from __future__ import annotations

import os

import numpy as np

from archc.compiler import ArchError

FILES = ("train.bin", "test.bin")
NAMES = {"fine": "fine_label_names.txt", "coarse": "coarse_label_names.txt"}
COUNTS = {"fine": 100, "coarse": 20}
RECORD = 2 + 32 * 32 * 3
SUBDIR = "cifar-100-binary"


def is_cifar100_dir(path: str) -> str | None:
    """The folder holding train.bin and test.bin (`path` or its cifar-100-binary/), or None."""
    for d in (path, os.path.join(path, SUBDIR)):
        if os.path.isfile(os.path.join(d, "train.bin")):
            return d
    return None


def records(blob: bytes, name: str, coarse: bool):
    """(images N x 32 x 32 x 3 uint8, labels N int32) of one .bin file."""
    if len(blob) % RECORD:
        hint = ("a 3073-byte record is CIFAR-10's: use data_batch_1.bin ... test_batch.bin"
                if len(blob) % (RECORD - 1) == 0 else None)
        raise ArchError(f"{name}: {len(blob):,} bytes is not a whole number of CIFAR-100 "
                        f"records ({RECORD} bytes each: coarse label, fine label, 3072 pixels)",
                        hint=hint)
    a = np.frombuffer(blob, np.uint8).reshape(-1, RECORD)
    which = "coarse" if coarse else "fine"
    labels = a[:, 0 if coarse else 1].astype(np.int32)
    top = int(labels.max(initial=0))
    if top >= COUNTS[which] or int(a[:, 0].max(initial=0)) >= COUNTS["coarse"]:
        raise ArchError(f"{name}: label {max(top, int(a[:, 0].max()))} is outside CIFAR-100's "
                        "range (20 coarse, 100 fine classes)", hint="is this CIFAR-100's binary "
                        "version (train.bin, test.bin)?")
    images = a[:, 2:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def class_names(blobs: dict, coarse: bool) -> tuple[str, ...]:
    which = "coarse" if coarse else "fine"
    text = blobs.get(NAMES[which])
    if text is None:
        return tuple(str(i) for i in range(COUNTS[which]))
    from archc._checks import decode_text
    names = tuple(n.strip() for n in decode_text(text, NAMES[which]).split("\n") if n.strip())
    if len(names) != COUNTS[which]:
        raise ArchError(f"{NAMES[which]} lists {len(names)} names, not CIFAR-100's "
                        f"{COUNTS[which]} {which} classes")
    return names


def from_blobs(blobs: dict, source: str, coarse: bool = False):
    """ImageData of {file name: bytes} (train.bin, test.bin and the optional name files)."""
    from .data import ImageData
    missing = [n for n in FILES if n not in blobs]
    if missing:
        raise ArchError(f"{source}: CIFAR-100 binary version incomplete: missing {missing}",
                        hint="the official cifar-100-binary.tar.gz holds train.bin and test.bin")
    tx, ty = records(blobs["train.bin"], "train.bin", coarse)
    vx, vy = records(blobs["test.bin"], "test.bin", coarse)
    return ImageData(tx, ty, vx, vy, class_names(blobs, coarse), source)


def read_dir(root: str, coarse: bool = False):
    from .decode import read_file
    blobs = {}
    for n in FILES + tuple(NAMES.values()):
        p = os.path.join(root, n)
        if os.path.isfile(p):
            blobs[n] = read_file(p)
    return from_blobs(blobs, root, coarse)
