"""Training data is read with bounded cost (issue 12, class 8): decompression bombs, huge
images, huge files and tar members, FIFOs and the total decoded size are clear errors,
checked before the work is done."""
from __future__ import annotations

import io
import os
import struct
import tarfile
import zlib

import numpy as np
import pytest

from archc.training import data as D
from archc.training import decode
from archc.compiler import ArchError

PIL = pytest.importorskip("PIL.Image")


def _png(h=8, w=8) -> bytes:
    buf = io.BytesIO()
    noise = np.random.default_rng(h * w).integers(0, 256, (h, w, 3), dtype=np.uint8)
    PIL.fromarray(noise).save(buf, format="PNG")
    return buf.getvalue()


def _claiming(w: int, h: int) -> bytes:
    """A tiny PNG whose header claims w x h pixels (a decompression bomb's header)."""
    png = bytearray(_png(1, 1))
    ihdr = struct.pack(">II", w, h) + png[24:29]
    png[16:29] = ihdr
    png[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(png)


def _folder(root, images: dict):
    for split in ("train", "test"):
        d = root / split / "c"
        d.mkdir(parents=True)
        for name, blob in images.items():
            (d / name).write_bytes(blob)
    return root


@pytest.mark.parametrize("w, h, words", [
    (5000, 5000, "is 5000x5000 pixels, more than the 16,777,216 archc decodes"),
    (60000, 60000, "is a decompression bomb"),  # PIL's own check, in Image.open
])
def test_decompression_bombs(tmp_path, w, h, words):
    root = _folder(tmp_path / "d", {"a.png": _png(), "bomb.png": _claiming(w, h)})
    with pytest.raises(ArchError) as info:
        D.load_images(str(root), cache=False)
    assert words in info.value.message and "bomb.png" in info.value.message


def test_total_decoded_size(tmp_path, monkeypatch):
    root = _folder(tmp_path / "d", {f"{i}.png": _png(64, 64) for i in range(20)})
    monkeypatch.setenv("ARCHC_MAX_DATA_BYTES", str(64 * 64 * 3 * 25))
    with pytest.raises(ArchError, match=r"decoded images would take more than 307,200 bytes"):
        D.load_images(str(root), cache=False)
    monkeypatch.setenv("ARCHC_MAX_DATA_BYTES", str(64 * 64 * 3 * 40))
    assert D.load_images(str(root), cache=False).train_x.shape == (20, 64, 64, 3)
    monkeypatch.setenv("ARCHC_MAX_DATA_BYTES", "lots")
    with pytest.raises(ArchError, match="ARCHC_MAX_DATA_BYTES must be a number"):
        D.load_images(str(root), cache=False)


def test_huge_files_and_members_are_not_read(tmp_path, monkeypatch):
    monkeypatch.setattr(decode, "MAX_FILE_BYTES", 1000)
    big = _png(64, 64)
    assert len(big) > 1000
    root = _folder(tmp_path / "d", {"a.png": _png(), "big.png": big})
    with pytest.raises(ArchError, match=r"big.png is \d[\d,]* bytes, more than the 1,000"):
        D.load_images(str(root), cache=False)
    for mode in ("w:gz", "w"):
        path = tmp_path / f"d.tar{'.gz' if 'gz' in mode else ''}"
        with tarfile.open(path, mode) as tar:
            tar.add(root / "train", arcname="train")
            tar.add(root / "test", arcname="test")
        with pytest.raises(ArchError, match=r"big.png is \d[\d,]* bytes, more than the 1,000"):
            D.load_images(str(path), cache=False)


def test_the_archive_stream_is_bounded(tmp_path, monkeypatch):
    root = _folder(tmp_path / "d", {f"{i}.png": _png() for i in range(10)})
    path = tmp_path / "d.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(root / "train", arcname="train")
        tar.add(root / "test", arcname="test")
        info = tarfile.TarInfo("train/c/zeros.bin")  # skipped, but it would be streamed
        info.size = 4_000_000
        tar.addfile(info, io.BytesIO(bytes(info.size)))
    monkeypatch.setenv("ARCHC_MAX_DATA_BYTES", "100000")
    with pytest.raises(ArchError, match="the archive holds more than 400,000 bytes"):
        D.load_images(str(path), cache=False)


def test_non_regular_files_are_not_opened(tmp_path):
    root = _folder(tmp_path / "d", {"a.png": _png()})
    os.mkfifo(root / "train" / "c" / "fifo.png")  # opening it would block forever
    with pytest.raises(ArchError, match="fifo.png is not a regular file"):
        D.load_images(str(root), cache=False)
