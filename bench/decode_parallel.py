"""Decode a CIFAR-10 image pack on every core into the official binary batches.

    python bench/decode_parallel.py PACK.tar.xz OUT_DIR [--workers N]

`archc train --data PACK.tar.xz` decodes the 60,000 JPEGs on one core (about 30 s here) and
caches the result; a GPU machine that starts bare has 16 cores and little time. This script
reads the archive once (image-folder layout: train/<class>/*, test/<class>/*, classes in
CIFAR-10's order), decodes the images in N processes exactly as training/data.py does
(Pillow, RGB, uint8; images sorted by class and file name), and writes OUT_DIR/
data_batch_1.bin ... data_batch_5.bin and test_batch.bin (3,073 bytes a record: the label,
then the 32x32 image as R, G, B planes), which `archc train --data OUT_DIR` reads without
decoding anything. tests/test_gpu_script.py checks that both give the same arrays.
"""
from __future__ import annotations

import argparse
import io
import multiprocessing as mp
import os
import re
import sys
import tarfile
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck")
MEMBER = re.compile(r"^(?:\./)?(?:[^/]+/)*?(train|test)/([^/]+)/([^/]+)$")


def _decode(blobs: list) -> np.ndarray:
    from PIL import Image
    out = []
    for blob in blobs:
        with Image.open(io.BytesIO(blob)) as im:
            out.append(np.asarray(im.convert("RGB"), dtype=np.uint8))
    return np.stack(out)


def read_members(path: str, per_class: int | None = None) -> dict:
    """{split: {(class, file name): bytes}} of the archive's images (with per_class: the
    first per_class of each class and split, by file name)."""
    found = {"train": {}, "test": {}}
    with tarfile.open(path, "r|*") as tar:
        for member in tar:
            m = MEMBER.match(member.name)
            if member.isfile() and m:
                found[m.group(1)][(m.group(2), m.group(3))] = tar.extractfile(member).read()
    if per_class:
        for split, items in found.items():
            keep, count = {}, {}
            for key in sorted(items):
                count[key[0]] = count.get(key[0], 0) + 1
                if count[key[0]] <= per_class:
                    keep[key] = items[key]
            found[split] = keep
    return found


def decode(path: str, workers: int, per_class: int | None = None) -> dict:
    """{split: (images N x 32 x 32 x 3 uint8, labels N uint8)}."""
    members = read_members(path, per_class)
    classes = tuple(sorted({c for c, _ in members["train"]}))
    if classes != CLASSES:
        raise SystemExit(f"{path}: classes {classes} are not CIFAR-10's")
    out = {}
    # spawned, not forked: a process that has started JAX's threads (a test, a notebook) must
    # not fork
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        for split, items in members.items():
            keys = sorted(items)
            if not keys:
                raise SystemExit(f"{path}: no {split} images")
            bounds = np.linspace(0, len(keys), min(workers * 4, len(keys)) + 1).astype(int)
            chunks = [[items[k] for k in keys[a:b]] for a, b in zip(bounds[:-1], bounds[1:])]
            images = np.concatenate(list(pool.map(_decode, chunks)))
            labels = np.array([CLASSES.index(c) for c, _ in keys], np.uint8)
            out[split] = (images, labels)
    return out


def write_batches(data: dict, out_dir: str) -> None:
    os.makedirs(out_dir, exist_ok=True)
    names = {"train": [f"data_batch_{i}.bin" for i in range(1, 6)], "test": ["test_batch.bin"]}
    for split, (images, labels) in data.items():
        if images.shape[1:] != (32, 32, 3):
            raise SystemExit(f"{split} images are {images.shape[1:]}, not 32x32x3")
        records = np.concatenate([labels[:, None], images.transpose(0, 3, 1, 2).reshape(
            len(labels), -1)], axis=1)
        for name, part in zip(names[split], np.array_split(records, len(names[split]))):
            tmp = os.path.join(out_dir, f".{name}.tmp")
            part.tofile(tmp)
            os.replace(tmp, os.path.join(out_dir, name))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pack")
    ap.add_argument("out")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--per-class", type=int, help="only the first N images of each class and "
                    "split (a quick test of the whole pipeline)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    data = decode(args.pack, max(1, args.workers), args.per_class)
    write_batches(data, args.out)
    n = {k: len(v[1]) for k, v in data.items()}
    print(f"decoded {n['train']} train + {n['test']} test images with {args.workers} "
          f"processes in {time.perf_counter() - t0:.1f} s -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
