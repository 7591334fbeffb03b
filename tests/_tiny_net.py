"""The tiny network and synthetic image folder of the compression and import tests: a
residual add and an SE block in 8x8 images, two classes told apart by colour."""
from __future__ import annotations

import os

import numpy as np

# A residual add and an SE block in 8x8 images: every special case of the seed's sec. 3.5.
TINY = """import "std/se.arch"

network Tiny(classes: int = 2) {
    x = input(3, 8, 8)
    x = x -> c1: conv(8, kernel=3, padding=1) -> b1: bn -> r1: relu
    y = x -> c2: conv(8, kernel=3, padding=1, bias=false) -> b2: bn -> r2: relu
    y = se: se(y, ratio=4)
    x = add: add(x, y) -> r3: relu
    x = x -> c3: conv(16, kernel=1, stride=2) -> b3: bn -> r4: relu
    return x -> pool: global_avgpool -> flatten: flatten -> fc: linear(classes)
}
"""


def write_images(root, rng):
    """train/ and test/ folders of 8x8 PNGs, 48 and 24 a class."""
    from PIL import Image
    for split, n in (("train", 48), ("test", 24)):
        for c, name in enumerate(("blue", "red")):
            d = os.path.join(root, split, name)
            os.makedirs(d)
            for i in range(n):
                img = rng.integers(0, 256, (8, 8, 3)).astype(np.float32) * 0.6
                img[..., 0 if c else 2] += 60
                Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(
                    os.path.join(d, f"{i:04d}.png"))


def random_image_folder(root, train: int = 6, test: int = 3) -> None:
    """`root`/data/{train,test}/{a,b}/ of random 8x8 PNGs (`train` and `test` a class), the
    same for every call: a data set for runs whose accuracy does not matter."""
    from PIL import Image
    rng = np.random.default_rng(0)
    for split, n in (("train", train), ("test", test)):
        for c in ("a", "b"):
            d = os.path.join(root, "data", split, c)
            os.makedirs(d)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(
                    os.path.join(d, f"{i}.png"))
