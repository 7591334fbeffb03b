"""bench/gpu.sh and its helpers (issue 17): the parallel decoder gives exactly the arrays
training/data.py gives; the whole script runs end to end with tiny settings on the CPU
(ARCHC_SLOW_TESTS=1: it trains three times and runs torch.compile)."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile

import numpy as np
import pytest

from archc.training import data as D

PIL = pytest.importorskip("PIL.Image")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACK = os.path.join(ROOT, "..", "shared", "data", "cifar10", "cifar10-jpeg.tar.xz")
sys.path.insert(0, os.path.join(ROOT, "bench"))
import decode_parallel  # noqa: E402


def _jpeg(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    PIL.fromarray(a).save(buf, format="JPEG", quality=75)
    return buf.getvalue()


def test_parallel_decode_equals_the_loader(tmp_path):
    """A CIFAR-10-layout tar of JPEGs (3 train and 2 test images a class, written out of
    order): the binary batches the decoder writes load to the same images and labels as the
    tar itself, and --per-class keeps the first images of each class."""
    rng = np.random.default_rng(0)
    pack = tmp_path / "pack.tar"
    with tarfile.open(pack, "w") as tar:
        for split, n in (("test", 2), ("train", 3)):
            for cls in reversed(decode_parallel.CLASSES):
                for i in reversed(range(n)):
                    blob = _jpeg(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
                    info = tarfile.TarInfo(f"{split}/{cls}/{i:04d}.jpg")
                    info.size = len(blob)
                    tar.addfile(info, io.BytesIO(blob))
    decode_parallel.main([str(pack), str(tmp_path / "bin"), "--workers", "2"])
    want = D.load_images(str(pack), cache=False)
    got = D.load_images(str(tmp_path / "bin"), cache=False)
    assert got.classes == want.classes == D.CIFAR10_CLASSES
    for k in ("train_x", "train_y", "test_x", "test_y"):
        np.testing.assert_array_equal(getattr(got, k), getattr(want, k), err_msg=k)
    decode_parallel.main([str(pack), str(tmp_path / "one"), "--workers", "1", "--per-class", "1"])
    one = D.load_images(str(tmp_path / "one"), cache=False)
    assert one.train_y.tolist() == list(range(10)) and one.test_y.tolist() == list(range(10))
    np.testing.assert_array_equal(one.train_x, want.train_x[::3])


@pytest.mark.slow   # three training runs
@pytest.mark.skipif(not os.environ.get("ARCHC_SLOW_TESTS"), reason="set ARCHC_SLOW_TESTS=1")
@pytest.mark.skipif(not os.path.exists(PACK), reason="no CIFAR-10 pack at ../shared")
def test_gpu_script_end_to_end_with_tiny_settings(tmp_path):
    """bench/gpu.sh with ARCHC_GPU_SMOKE=1 on the CPU: every step runs and the report holds
    every row and both training runs."""
    data = os.path.join(ROOT, "data")
    os.makedirs(data, exist_ok=True)
    if not os.path.exists(os.path.join(data, "cifar10-jpeg.tar.xz")):
        import shutil
        shutil.copy(PACK, data)
    env = dict(os.environ, OUT=str(tmp_path / "out"), ARCHC_GPU_WORK=str(tmp_path / "work"),
               ARCHC_GPU_SMOKE="1", ARCHC_GPU_BUDGET="3000", JAX_PLATFORMS="cpu")
    proc = subprocess.run(["bash", os.path.join(ROOT, "bench", "gpu.sh")], env=env,
                          capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = tmp_path / "out"
    assert sorted(os.listdir(out)) == ["fast_metrics.jsonl", "fast_summary.json", "log.txt",
                                       "paper_metrics.jsonl", "report.md", "speed.json"]
    rows = json.loads((out / "speed.json").read_text())["rows"]
    assert [r["key"] for r in rows] == ["jax", "jax_scan", "eager", "channels_last",
                                        "compile"]
    assert all("error" not in r and r["images_per_s"] > 0 for r in rows), rows
    report = (out / "report.md").read_text()
    assert "epochs finished: 2 of 2" in report and "JPEG copy" in report
    fast = json.loads((out / "fast_summary.json").read_text())
    assert fast["epochs"] == 2
