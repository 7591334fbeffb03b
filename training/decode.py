"""Bounded reading and decoding of data-set files for `archc train` (training/data.py).

Every read is bounded before it is done: a file or tar member is read only if its size is
within MAX_FILE_BYTES (a FIFO, device or other non-regular file is never opened), an image is
decoded only if its header's width x height is within MAX_IMAGE_PIXELS and the running
total of decoded bytes stays within max_decoded_bytes() ($ARCHC_MAX_DATA_BYTES, default
2 GiB). Each limit is a clear ArchError, never a MemoryError or a decompression bomb.
"""
from __future__ import annotations

import contextvars
import io
import os
import stat
import warnings

import numpy as np

from archc.compiler import ArchError

MAX_FILE_BYTES = 256 * 2**20       # one image file, tar member or CIFAR-10 batch file
MAX_IMAGE_PIXELS = 4096 * 4096     # width x height of one image
MAX_DECODED_BYTES = 2 * 2**30      # all decoded images together (CIFAR-10: 184 MB)
LAYOUT_HINT = "expected image files (.jpg, .png, .bmp) or CIFAR-10 batches"


def max_decoded_bytes() -> int:
    """The limit on all decoded images together: $ARCHC_MAX_DATA_BYTES, else 2 GiB."""
    text = os.environ.get("ARCHC_MAX_DATA_BYTES", "")
    try:
        return int(text) if text else MAX_DECODED_BYTES
    except ValueError:
        raise ArchError(f"ARCHC_MAX_DATA_BYTES must be a number of bytes, not '{text}'") \
            from None


class Budget:
    """The decoded bytes of one data set so far, checked before each image is decoded."""

    def __init__(self):
        self.limit, self.used = max_decoded_bytes(), 0

    def take(self, nbytes: int, name: str) -> None:
        if self.used + nbytes > self.limit:
            raise ArchError(f"{name}: the decoded images would take more than "
                            f"{self.limit:,} bytes", hint="a smaller data set, or raise the "
                            "limit with ARCHC_MAX_DATA_BYTES=<bytes>")
        self.used += nbytes


def size_ok(size: int, name: str) -> None:
    if size > MAX_FILE_BYTES:
        raise ArchError(f"{name} is {size:,} bytes, more than the {MAX_FILE_BYTES:,} that archc "
                        "reads from one file", hint="images and CIFAR-10 batches are far "
                        "smaller; is this the right data set?")


def read_file(path: str) -> bytes:
    """A regular file's bytes, its size checked first (a FIFO, device or huge file is never
    read)."""
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise ArchError(f"{path} is not a regular file", hint=LAYOUT_HINT)
        size_ok(st.st_size, path)
        with open(path, "rb") as f:
            blob = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ArchError(f"cannot read {path}: {exc.strerror or exc}") from None
    size_ok(len(blob), path)
    return blob


# called with 1 after each decoded image while data.load_images shows a progress bar
DECODED: contextvars.ContextVar = contextvars.ContextVar("archc_decoded", default=None)


def decode(blob: bytes, name: str, budget: Budget) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(blob)) as im:  # reads the header only
                w, h = im.size
                if w * h > MAX_IMAGE_PIXELS:
                    raise ArchError(f"image {name} is {w}x{h} pixels, more than the "
                                    f"{MAX_IMAGE_PIXELS:,} archc decodes")
                budget.take(w * h * 3, name)
                pixels = np.asarray(im.convert("RGB"), dtype=np.uint8)
                tick = DECODED.get()
                if tick is not None:
                    tick(1)
                return pixels
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ArchError(f"image {name} is a decompression bomb: {exc}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ArchError(f"cannot decode image {name}: {exc}") from None
