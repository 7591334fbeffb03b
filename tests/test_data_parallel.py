"""Data-parallel training (training/distributed.py): 4 devices give the parameters of 1
device for the same global batch (XLA's forced host devices stand in for accelerators), bad
device counts and batch sizes are clear errors, and a 2-process jax.distributed run on
localhost trains, checkpoints once and resumes on one process."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("jax")
PIL = pytest.importorskip("PIL.Image")

pytestmark = pytest.mark.slow   # runs on 4 forced devices and in 2 processes

# two conv layers with batch norm: the statistics must be those of the global batch
TINY = """
network Tiny(classes: int = 2) {
    x = input(3, 8, 8)
    x = x -> c1: conv(4, kernel=3) -> b1: bn -> r1: relu
    x = x -> c2: conv(4, kernel=3, stride=2) -> b2: bn -> r2: relu
    return x -> pool: global_avgpool -> flatten: flatten -> fc: linear(classes)
}
"""


def make_data(root, per_class=16, test_per_class=4):
    rng = np.random.default_rng(0)
    for split, n in (("train", per_class), ("test", test_per_class)):
        for c, base in (("a", 40), ("b", 170)):
            os.makedirs(os.path.join(root, split, c), exist_ok=True)
            for j in range(n):
                img = np.clip(base + rng.normal(0, 40, (8, 8, 3)), 0, 255).astype(np.uint8)
                PIL.fromarray(img).save(os.path.join(root, split, c, f"{j}.png"))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("dp")
    make_data(str(root / "data"))
    (root / "tiny.arch").write_text(TINY)
    env = dict(os.environ, JAX_PLATFORMS="cpu")  # the session's XLA cache (conftest.py)
    return root, env


def xla_flags(env, devices):
    """The session's XLA flags (tests/conftest.py) and `devices` forced host devices."""
    return f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}".strip()


def run_py(code, env, devices, timeout=240):
    env = dict(env, XLA_FLAGS=xla_flags(env, devices))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=env, timeout=timeout, check=False)


def test_four_devices_equal_one(setup):
    """The same global batch on 1 and on 4 devices (in memory, and streamed): the same
    trained parameters and BN statistics, to float tolerance."""
    root, env = setup
    proc = run_py(f"""
        import jax, numpy as np, archc
        assert jax.device_count() == 4
        def run(devices, stream="off"):
            r = archc.train("{root}/tiny.arch", "{root}/data", {{"epochs": 2, "batch_size": 8,
                            "lr": 0.05}}, out=f"{root}/dp{{devices}}{{stream}}", devices=devices,
                            progress=False, cache=False, stream=stream)
            return jax.tree_util.tree_leaves_with_path(r["state"]), r
        one, r1 = run(1)
        for other, r in (run(4), run(4, "on")):  # in memory, and streamed by Grain
            worst = 0.0
            for (path, a), (_, b) in zip(one, other):
                np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5, err_msg=str(path))
                worst = max(worst, float(np.max(np.abs(a - b))))
            assert r1["last_test_acc"] == r["last_test_acc"]
            print("max abs difference", worst)
    """, env, 4)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "4 cpu devices" in proc.stdout and "1 cpu device" in proc.stdout
    assert "streaming" in proc.stdout and proc.stdout.count("max abs difference") == 2


BAD_FLAGS = [
    (["--devices", "5"], "--devices 5: this process has 4 cpu device(s)"),
    (["--devices", "0"], "--devices 0"),
    (["--batch-size", "6"], "--batch-size 6 is not a multiple of the 4 devices"),
    (["--devices", "2", "--backend", "torch"], "options of the JAX backend"),
]


@pytest.fixture(scope="module")
def bad_flag_runs(setup):
    """`archc train` with each of BAD_FLAGS, in one process with 4 devices: flags -> (exit
    code, stderr, whether the run folder exists afterwards)."""
    root, env = setup
    runs = []
    for i, (flags, _) in enumerate(BAD_FLAGS):
        args = ["train", str(root / "tiny.arch"), "--data", str(root / "data"), "--epochs", "1",
                "--out", str(root / f"bad{i}"), "--no-progress", *flags]
        runs.append(args + ([] if "--batch-size" in flags else ["--batch-size", "8"]))
    proc = run_py(f"""
        import contextlib, io, json, os
        from archc._cli import main
        results = []
        for args in {runs!r}:
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                rc = main(args)
            results.append([rc, err.getvalue(), os.path.exists(args[args.index("--out") + 1])])
        print(json.dumps(results))
    """, env, 4, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads(proc.stdout.splitlines()[-1])
    return {tuple(flags): tuple(r) for (flags, _), r in zip(BAD_FLAGS, results)}


@pytest.mark.parametrize("flags, message", BAD_FLAGS)
def test_bad_device_flags_exit_2(bad_flag_runs, flags, message):
    rc, err, written = bad_flag_runs[tuple(flags)]
    assert rc == 2, err
    assert message in err and "Traceback" not in err
    assert not written  # nothing written


def _free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli(root, out, stream, *extra):
    return [sys.executable, "-m", "archc", "train", str(root / "tiny.arch"), "--data",
            str(root / "data"), "--epochs", "2", "--batch-size", "8", "--lr", "0.05",
            "--out", str(out), "--no-progress", "--no-cache", "--stream", stream, *extra]


@pytest.mark.parametrize("stream", ["off", "on"])
def test_two_process_run_checkpoints_once_and_resumes_on_one(setup, stream):
    """2 processes x 2 CPU devices (jax.distributed, localhost coordinator) train 2 epochs;
    the run folder holds one copy of each checkpoint. Epoch 2's checkpoint is then removed
    and the run resumed from epoch 1 on one process with one device: its final weights are
    the 4-device run's, to float tolerance. Streamed, each process reads only its half of
    every batch."""
    from safetensors.numpy import load_file
    root, env = setup
    out = root / f"mh-{stream}"
    port = _free_port()
    env2 = dict(env, XLA_FLAGS=xla_flags(env, 2))
    procs = [subprocess.Popen(_cli(root, out, stream, "--coordinator", f"127.0.0.1:{port}",
                                   "--num-processes", "2", "--process-id", str(i)),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=env2) for i in range(2)]
    logs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n----\n".join(logs)
    assert "4 cpu devices" in logs[0]
    assert ("streaming" in logs[0]) == (stream == "on")
    ckpts = out / "checkpoints"
    assert sorted(os.listdir(ckpts)) == ["1", "2"]  # one folder an epoch, no per-process copy
    hist = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in hist] == [1, 2]
    want = load_file(str(out / "model.safetensors"))

    import shutil
    shutil.rmtree(ckpts / "2")
    (out / "model.safetensors").unlink()
    proc = subprocess.run(_cli(root, out, stream, "--resume", "--devices", "1"), capture_output=True,
                          text=True, check=False, timeout=300,
                          env=dict(env, XLA_FLAGS=xla_flags(env, 1)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "resuming" in proc.stdout and "after epoch 1" in proc.stdout
    assert "1 cpu device" in proc.stdout
    got = load_file(str(out / "model.safetensors"))
    assert set(got) == set(want)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-4, atol=1e-5, err_msg=k)
    hist2 = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert hist2[0] == hist[0] and hist2[1]["test_acc"] == hist[1]["test_acc"]
