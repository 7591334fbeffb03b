"""Tiny ImageNet (the `tiny-imagenet-200` folder) for `archc train` (training/data.py).

Layout: `wnids.txt` (the 200 class ids), `train/<wnid>/images/*.JPEG` (500 a class),
`val/images/*.JPEG` with `val/val_annotations.txt` (tab-separated: file name, wnid, box), and
an unlabelled `test/` that is not read. The labelled val split is archc's test split (seed 003
reports it); classes are the wnids in sorted order, numbered from 0. Images are 64x64 RGB
(a few are greyscale JPEGs: converted to RGB).
"""
from __future__ import annotations

import os

from archc._checks import decode_text
from archc.compiler import ArchError

from .data import IMAGE_SUFFIXES, ImageData, _stack
from .decode import Budget, decode, read_file

HINT = ("Tiny ImageNet's layout: wnids.txt, train/<wnid>/images/*.JPEG, val/images/*.JPEG and "
        "val/val_annotations.txt")


def is_tiny_imagenet(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "wnids.txt")) or os.path.isfile(
        os.path.join(path, "val", "val_annotations.txt"))


def _images(folder: str):
    return sorted(n for n in os.listdir(folder) if n.lower().endswith(IMAGE_SUFFIXES))


def annotations(root: str) -> dict[str, str]:
    """{val file name: wnid} from val/val_annotations.txt."""
    path = os.path.join(root, "val", "val_annotations.txt")
    if not os.path.isfile(path):
        raise ArchError(f"{root}: val/val_annotations.txt is missing", hint=HINT)
    out = {}
    lines = decode_text(read_file(path), path).split("\n")
    for no, line in enumerate(lines, 1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) < 2 or not parts[0] or not parts[1]:
            raise ArchError(f"{path}:{no}: expected 'file<TAB>wnid<TAB>box', got {line[:80]!r}",
                            hint=HINT)
        if out.get(parts[0], parts[1]) != parts[1]:
            raise ArchError(f"{path}:{no}: {parts[0][:80]!r} is labelled {parts[1][:80]!r} here "
                            f"and {out[parts[0]][:80]!r} on an earlier line", hint=HINT)
        out[parts[0]] = parts[1]
    return out


def read(root: str) -> ImageData:
    train_dir, val_dir = os.path.join(root, "train"), os.path.join(root, "val", "images")
    for d in (train_dir, val_dir):
        if not os.path.isdir(d):
            raise ArchError(f"{root}: no {os.path.relpath(d, root)}/ folder", hint=HINT)
    classes = tuple(sorted(c for c in os.listdir(train_dir)
                           if os.path.isdir(os.path.join(train_dir, c))))
    wnids_file = os.path.join(root, "wnids.txt")
    if os.path.isfile(wnids_file):
        text = decode_text(read_file(wnids_file), wnids_file)
        wnids = sorted(w.strip() for w in text.split() if w.strip())
        if tuple(wnids) != classes:
            missing, extra = sorted(set(wnids) - set(classes)), sorted(set(classes) - set(wnids))
            raise ArchError(f"{root}: train/ folders do not match wnids.txt (missing "
                            f"{missing[:5]}, not listed {extra[:5]})", hint=HINT)
    budget, train = Budget(), {}
    for c in classes:
        images = os.path.join(train_dir, c, "images")
        if not os.path.isdir(images):
            raise ArchError(f"{root}: train/{c}/images/ is missing", hint=HINT)
        for name in _images(images):
            p = os.path.join(images, name)
            train[(c, name)] = decode(read_file(p), p, budget)
    labels = annotations(root)
    known = set(classes)
    val = {}
    files = _images(val_dir)
    unlabelled = [n for n in files if n not in labels]
    if unlabelled:
        raise ArchError(f"{root}: val/images/{unlabelled[0]} (and {len(unlabelled) - 1} more) "
                        "has no line in val/val_annotations.txt", hint=HINT)
    absent = sorted(set(labels) - set(files))
    if absent:
        raise ArchError(f"{root}: val/val_annotations.txt names {absent[0]} (and "
                        f"{len(absent) - 1} more), which is not in val/images/", hint=HINT)
    for name in files:
        wnid = labels[name]
        if wnid not in known:
            raise ArchError(f"{root}: val/val_annotations.txt labels {name} as {wnid}, which "
                            "is not a train/ class", hint=HINT)
        p = os.path.join(val_dir, name)
        val[(wnid, name)] = decode(read_file(p), p, budget)
    tx, ty = _stack(train, "train", root, classes)
    vx, vy = _stack(val, "val", root, classes)
    return ImageData(tx, ty, vx, vy, classes, root)
