"""Throughput of archc's streaming input pipeline (training/stream.py, Grain): images/s
decoded and transformed on the host, in total and per loader worker, so a user can compare it
with the training step's images/s (bench/train_speed.py) and see which one is the bottleneck.

The data set is synthetic and ImageNet-like: JPEG files (quality 90) of random sizes around
ImageNet's median (about 500 x 375), with smooth content so they compress like photographs;
each image is read, decoded (Pillow), random-resized-cropped to --size and flipped (training)
or resized and center-cropped (--eval), and batched. Worker counts 0 (Grain's threads in this
process) and 1..N processes (`--loader-workers`). The first batch (worker start-up) is timed
apart; throughput is over the remaining batches. Results depend on the CPU and its load.

    python bench/loader_speed.py                         # 512 images, workers 0,1,2
    python bench/loader_speed.py --images 2048 --workers 0,1,2,4,8 --batch 128
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))


def make_folder(root: str, images: int, seed: int = 0) -> None:
    from PIL import Image
    rng = np.random.default_rng(seed)
    for c in range(4):
        os.makedirs(os.path.join(root, "train", f"n{c:02d}"), exist_ok=True)
        os.makedirs(os.path.join(root, "val", f"n{c:02d}"), exist_ok=True)
    for i in range(images):
        h, w = int(rng.integers(300, 450)), int(rng.integers(400, 600))
        small = rng.integers(0, 255, (h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((w, h), Image.BICUBIC)
        img.save(os.path.join(root, "train", f"n{i % 4:02d}", f"{i}.JPEG"), quality=90)
    img.save(os.path.join(root, "val", "n00", "0.JPEG"), quality=90)


def measure(root: str, workers: int, batch: int, size: int, train: bool) -> dict:
    from archc.training import stream
    d = stream.open_folder(root, size)
    n = len(d.train_y) // batch * batch
    t0 = time.perf_counter()
    it = stream.batches(np.arange(n), d.train_paths, d.train_y, d.mode, size, batch,
                        train=train, seed=0, epoch=1, workers=workers)
    first = next(it)
    t1 = time.perf_counter()
    count = 0
    for b in it:
        count += len(b["y"])
    t2 = time.perf_counter()
    it.close()
    assert first["x"].shape == (batch, size, size, 3)
    rate = count / (t2 - t1)
    return {"workers": workers, "images": count, "seconds": round(t2 - t1, 3),
            "startup_seconds": round(t1 - t0, 3), "images_per_second": round(rate, 1),
            "per_worker": round(rate / max(workers, 1), 1)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=512)
    p.add_argument("--workers", default="0,1,2", help="comma-separated worker counts")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--eval", action="store_true", help="the eval transform (resize, center crop)")
    p.add_argument("--data", help="an existing image folder instead of the synthetic one")
    p.add_argument("--json", help="write the rows here")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data or tmp
        if not args.data:
            t = time.perf_counter()
            make_folder(root, args.images)
            print(f"wrote {args.images} synthetic JPEGs in {time.perf_counter() - t:.1f} s")
        rows = [measure(root, int(w), args.batch, args.size, not args.eval)
                for w in args.workers.split(",")]
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, batch "
          f"{args.batch}, {args.size}x{args.size}, {'eval' if args.eval else 'train'} transform")
    print(f"{'workers':>8} {'images/s':>10} {'per worker':>11} {'start-up s':>11}")
    for r in rows:
        print(f"{r['workers']:>8} {r['images_per_second']:>10.1f} {r['per_worker']:>11.1f} "
              f"{r['startup_seconds']:>11.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
