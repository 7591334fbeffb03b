"""bench/gpu.sh and its helpers (issue 17): the parallel decoder gives exactly the arrays
training/data.py gives; the whole script runs end to end with tiny settings on the CPU
(ARCHC_SLOW_TESTS=1: it trains three times and runs torch.compile), the way the lent GPU
machine runs it: every package its image lacks unimportable (tests/_gpu_image.py), lark from
a carried wheel. A package the image lacks, planted on the script's path, fails the smoke
test; `archc train` on an image folder needs no grain."""
from __future__ import annotations

import glob
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import textwrap

import numpy as np
import pytest

from _gpu_image import blocked, image_env  # tests/
from archc.training import data as D

PIL = pytest.importorskip("PIL.Image")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# the CIFAR-10 pack beside the checkout (../shared), or beside a worktree's parent
PACKS = [os.path.normpath(os.path.join(ROOT, *up, "shared", "data", "cifar10",
                                       "cifar10-jpeg.tar.xz")) for up in ([".."], ["..", ".."])]
PACK = next((p for p in PACKS if os.path.exists(p)), PACKS[0])
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


def carried_lark(folder) -> str:
    """`folder` holding a copy of the installed lark package: what the script's carried lark
    wheel gives the GPU machine, for a test that needs no wheel."""
    import lark
    shutil.copytree(os.path.dirname(lark.__file__), os.path.join(folder, "lark"))
    return str(folder)


def test_the_image_lacks_grain_and_lark():
    """The packages made unimportable are those archc's extras name and the image's list does
    not: grain and lark among them, jax, flax, optax, orbax and torch not."""
    names = set(blocked().values())
    assert {"grain", "lark"} <= names
    assert not names & {"jax", "flax", "optax", "orbax-checkpoint", "torch", "numpy", "pillow"}


def test_what_the_image_lacks_cannot_be_imported(tmp_path):
    """In image_env, each blocked package is as if uninstalled (find_spec None, import fails),
    lark comes from the carried copy only, and what the image has imports."""
    carried = carried_lark(tmp_path / "carried")
    env = image_env(tmp_path / "image", allowed=[carried])
    env["PYTHONPATH"] += os.pathsep + carried
    code = textwrap.dedent("""
        import importlib.util, os, sys
        for m in sys.argv[1].split(","):
            if m == "lark":
                continue
            assert importlib.util.find_spec(m) is None, m
            try:
                __import__(m)
            except ModuleNotFoundError as e:
                assert repr(m) in str(e), e
            else:
                raise AssertionError(m + " was imported")
        import lark
        assert lark.__file__.startswith(sys.argv[2]), lark.__file__
        for m in sys.argv[3].split(","):
            __import__(m)
        print("ok")
    """)
    import importlib.util
    has = [m for m in ("flax", "jax", "numpy", "optax", "orbax.checkpoint", "PIL", "torch")
           if importlib.util.find_spec(m) is not None]  # the image has them: they stay
    proc = subprocess.run([sys.executable, "-c", code, ",".join(blocked()), carried,
                           ",".join(has)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stdout + proc.stderr
    # without the carried copy, lark is gone too (archc itself cannot be imported)
    env = image_env(tmp_path / "image2")
    proc = subprocess.run([sys.executable, "-c", "import archc"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode != 0 and "No module named 'lark'" in proc.stderr, proc.stderr


@pytest.mark.slow   # two CLI training runs
def test_train_on_an_image_folder_without_grain(tmp_path):
    """`archc train` on an image folder (in memory: --stream auto decides so) trains with grain
    unimportable; --stream on is then the clear error that names grain, exit 2."""
    from test_data_parallel import TINY, make_data
    make_data(str(tmp_path / "data"))
    (tmp_path / "tiny.arch").write_text(TINY)
    carried = carried_lark(tmp_path / "carried")
    env = image_env(tmp_path / "image", allowed=[carried])
    env["PYTHONPATH"] += os.pathsep + carried
    env["JAX_PLATFORMS"] = "cpu"
    assert "grain" in env["ARCHC_IMAGE_BLOCKED"].split(",")
    args = [sys.executable, "-m", "archc", "train", str(tmp_path / "tiny.arch"), "--data",
            str(tmp_path / "data"), "--epochs", "1", "--batch-size", "8", "--no-progress",
            "--no-cache"]
    proc = subprocess.run([*args, "--out", str(tmp_path / "run")], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["epochs"] == 1
    assert "streaming" not in proc.stdout
    proc = subprocess.run([*args, "--out", str(tmp_path / "streamed"), "--stream", "on"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "needs packages that are not installed: grain" in proc.stderr
    assert "--stream off" in proc.stderr and "Traceback" not in proc.stderr


def lark_wheels(tmp_path) -> str:
    """The folder of wheels the script carries: the checkout's .whl/ (as prepared for the
    device), else lark's wheel fetched for this test (the command the script's header gives)."""
    if glob.glob(os.path.join(ROOT, ".whl", "lark-*.whl")):
        return os.path.join(ROOT, ".whl")
    import lark
    whl = tmp_path / "whl"
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                           "--only-binary=:all:", "-d", str(whl), f"lark=={lark.__version__}"],
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        pytest.skip(f"no lark wheel to carry (.whl/ is empty, pip download failed: "
                    f"{proc.stderr.strip()[-200:]})")
    return str(whl)


def run_gpu_script(root, tmp_path, wheels):
    """bench/gpu.sh of the checkout `root` with ARCHC_GPU_SMOKE=1, as the GPU machine runs it:
    what the image lacks unimportable, lark from `wheels`. (the process, its $OUT)"""
    data = os.path.join(root, "data")
    os.makedirs(data, exist_ok=True)
    if not os.path.exists(os.path.join(data, "cifar10-jpeg.tar.xz")):
        shutil.copy(PACK, data)
    work = tmp_path / "work"
    env = image_env(tmp_path / "image", allowed=[work / "site", work / "pkg"], archc=True)
    env.update(OUT=str(tmp_path / "out"), ARCHC_GPU_WORK=str(work), ARCHC_GPU_WHEELS=wheels,
               ARCHC_GPU_SMOKE="1", ARCHC_GPU_BUDGET="3000", JAX_PLATFORMS="cpu")
    proc = subprocess.run(["bash", os.path.join(root, "bench", "gpu.sh")], env=env,
                          capture_output=True, text=True, timeout=3600)
    return proc, tmp_path / "out"


def check_gpu_script(proc, out) -> None:
    """What a finished smoke run must show: every step ran, the report holds every row and
    both training runs (an AssertionError otherwise)."""
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    files = sorted(os.listdir(out))
    assert files == ["fast_metrics.jsonl", "fast_summary.json", "log.txt",
                     "paper_metrics.jsonl", "report.md", "speed.json"], \
        (files, proc.stdout[-3000:])
    rows = json.loads((out / "speed.json").read_text())["rows"]
    assert [r["key"] for r in rows] == ["jax", "jax_scan", "eager", "channels_last",
                                        "compile"]
    assert all("error" not in r and r["images_per_s"] > 0 for r in rows), rows
    report = (out / "report.md").read_text()
    assert "epochs finished: 2 of 2" in report and "JPEG copy" in report
    fast = json.loads((out / "fast_summary.json").read_text())
    assert fast["epochs"] == 2


@pytest.mark.slow   # three training runs
@pytest.mark.skipif(not os.environ.get("ARCHC_SLOW_TESTS"), reason="set ARCHC_SLOW_TESTS=1")
@pytest.mark.skipif(not os.path.exists(PACK), reason="no CIFAR-10 pack at ../shared")
def test_gpu_script_end_to_end_with_tiny_settings(tmp_path):
    """bench/gpu.sh with ARCHC_GPU_SMOKE=1 on the CPU, with the GPU image's packages only:
    every step runs and the report holds every row and both training runs."""
    check_gpu_script(*run_gpu_script(ROOT, tmp_path, lark_wheels(tmp_path)))


@pytest.mark.slow   # the script up to its first training run
@pytest.mark.skipif(not os.path.exists(PACK), reason="no CIFAR-10 pack at ../shared")
def test_gpu_script_fails_on_a_package_the_image_lacks(tmp_path):
    """The guard can fail: a copy of the checkout whose in-memory data path imports grain
    (planted) fails the smoke test, and for that reason (grain is installed here: without the
    image's environment the planted import would pass)."""
    copy = tmp_path / "repo"
    files = subprocess.run(["git", "-C", ROOT, "ls-files", "-co", "--exclude-standard"],
                           capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        if os.path.isfile(os.path.join(ROOT, name)):
            os.makedirs(copy / os.path.dirname(name), exist_ok=True)
            shutil.copy2(os.path.join(ROOT, name), copy / name)
    planted = copy / "training" / "data.py"
    text = planted.read_text().replace("import numpy as np\n", "import numpy as np\nimport grain"
                                       "  # planted: a package the GPU image lacks\n", 1)
    assert "import grain" in text
    planted.write_text(text)
    proc = subprocess.run([sys.executable, "-c", "import grain"], capture_output=True)
    assert proc.returncode == 0  # installed here
    proc, out = run_gpu_script(str(copy), tmp_path, lark_wheels(tmp_path))
    with pytest.raises(AssertionError):
        check_gpu_script(proc, out)
    assert "No module named 'grain'" in proc.stdout + proc.stderr
