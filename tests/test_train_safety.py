"""`archc train` around its run folder (issue 12, classes 7, 9, 10, 11): a checkpoint that
cannot be written is one clear error, checkpoints are verified on resume, --resume takes
the subset sizes from run.json, a run killed before its first epoch can resume or restart,
and the JAX compilation cache is used only from a folder no one else may write."""
from __future__ import annotations

import errno
import json
import os
import subprocess

import numpy as np
import pytest

import archc
from archc import _cli
from archc.training import guard
from archc.compiler import ArchError
from _tiny_net import random_image_folder

TINY = ("network T(classes: int = 2) {\n x = input(3, 8, 8)\n"
        " x = conv(x, 4, kernel=3, stride=2) -> relu\n x = global_avgpool(x)\n"
        " x = flatten(x)\n return linear(x, classes)\n}\n")


@pytest.fixture
def tiny(tmp_path):
    """A 2-class data folder of 8x8 PNGs (6 train, 3 test per class) and a tiny network."""
    pytest.importorskip("PIL.Image")
    random_image_folder(tmp_path)
    (tmp_path / "t.arch").write_text(TINY)
    return tmp_path


def cli(tmp_path, monkeypatch, capsys, *argv):
    monkeypatch.chdir(tmp_path)
    rc = _cli.main(["train", "t.arch", "--data", "data", "--backend", "torch", "--epochs", "1",
                    "--batch-size", "4", "--no-progress", "--no-cache", *argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "internal error" not in err, err
    return rc, out, err


# ---- class 11: resume ---------------------------------------------------------------------
@pytest.mark.slow   # training runs
def test_resume_takes_the_subset_from_run_json(tiny, monkeypatch, capsys):
    pytest.importorskip("torch")
    rc, out, err = cli(tiny, monkeypatch, capsys, "--out", "r", "--train-per-class", "4",
                       "--test-per-class", "2")
    assert rc == 0, err
    run = json.loads((tiny / "r" / "run.json").read_text())
    assert (run["data"]["train_per_class"], run["data"]["test_per_class"]) == (4, 2)
    rc, out, err = cli(tiny, monkeypatch, capsys, "--out", "r", "--resume")
    assert rc == 0, err
    assert "has finished all 1 epochs" in out
    rc, out, err = cli(tiny, monkeypatch, capsys, "--out", "r", "--resume",
                       "--train-per-class", "5")
    assert rc == 2 and "data.train_per_class: checkpoint has 4, this run has 5" in err


@pytest.mark.slow   # training runs
def test_a_run_killed_before_its_first_epoch_can_resume_or_restart(tiny, monkeypatch, capsys):
    pytest.importorskip("torch")
    from archc.training import torch_loop

    def killed(*a, **k):
        raise KeyboardInterrupt
    with monkeypatch.context() as m:
        m.setattr(torch_loop, "run_epochs", killed)
        rc, out, err = cli(tiny, monkeypatch, capsys, "--out", "r")
    assert rc == 130 and (tiny / "r" / "run.json").exists()
    (tiny / "r" / "checkpoints" / ".archc-00000000-1-x.tmp").write_text("partial")
    rc, out, err = cli(tiny, monkeypatch, capsys, "--out", "r", "--resume")
    assert rc == 0, err
    assert "has no finished epoch yet: starting it from the beginning" in out
    # the same, without --resume: nothing was trained, so the folder may be reused
    (tiny / "r2" / "checkpoints").mkdir(parents=True)
    (tiny / "r2" / "run.json").write_text(json.dumps({"recipe": {}}))
    rc, out, err = cli(tiny, monkeypatch, capsys, "--out", "r2")
    assert rc == 0, err
    rc, out, err = cli(tiny, monkeypatch, capsys, "--out", "r2")  # now it holds a run
    assert rc == 2 and "already holds a training run" in err


# ---- class 10: checksums --------------------------------------------------------------------
def _torch_loop(tiny, tmp_path):
    from archc.training import torch_loop
    from archc.training.data import load_images
    net = archc.load(str(tiny / "t.arch"))
    data = load_images(str(tiny / "data"), cache=False)
    (tmp_path / "ck").mkdir(exist_ok=True)
    return torch_loop.TorchLoop(net, data, archc.Recipe(epochs=1, batch_size=4), 3,
                                str(tmp_path / "ck"), device="cpu")


def test_torch_checkpoints_are_verified(tiny, tmp_path):
    pytest.importorskip("torch")
    from safetensors import safe_open

    from archc.backends import weights
    loop = _torch_loop(tiny, tmp_path)
    loop.save(1, {"epoch": 1, "fingerprint": {}, "history": []})
    path = str(tmp_path / "ck" / "epoch-0001.safetensors")
    assert loop.restore({})["epoch"] == 1
    with safe_open(path, "np") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    key = sorted(k for k in tensors if k.endswith("weight"))[0]
    tensors[key].reshape(-1)[0] += 2e38  # a flipped exponent bit: still a valid file
    weights.save(path, tensors, metadata=meta)
    with pytest.raises(ArchError) as info:
        loop.restore({})
    assert f"checksum mismatch: {key}" in info.value.message
    weights.save(path, tensors)  # no metadata at all
    with pytest.raises(ArchError) as info:
        loop.restore({})
    assert "it has no archc metadata (run, epoch, checksums): it was not written by archc " \
           "train" in info.value.message


@pytest.mark.slow   # a JAX training run
def test_jax_checkpoints_are_verified(tmp_path):
    pytest.importorskip("orbax.checkpoint")
    import orbax.checkpoint as ocp

    from archc.training.jax_loop import Checkpoints
    state = {"params": {"w": np.arange(6, dtype=np.float32)}, "step": np.zeros((), np.int32)}
    ck = Checkpoints(str(tmp_path / "ck"))
    ck.save(1, state, {"epoch": 1, "fingerprint": {}})
    restored, meta = ck.restore(state, {})
    np.testing.assert_array_equal(restored["params"]["w"], state["params"]["w"])
    ck.close()
    # rewrite the checkpoint with one weight changed and the old metadata (checksums)
    bad = {"params": {"w": state["params"]["w"].copy()}, "step": state["step"]}
    bad["params"]["w"][2] += 2e38
    raw = ocp.CheckpointManager(str(tmp_path / "ck"))
    raw.delete(1)
    raw.save(1, args=ocp.args.Composite(state=ocp.args.StandardSave(bad),
                                        meta=ocp.args.JsonSave(meta)))
    raw.wait_until_finished()
    raw.close()
    ck = Checkpoints(str(tmp_path / "ck"))
    with pytest.raises(ArchError) as info:
        ck.restore(state, {})
    assert "checksum mismatch: params/w" in info.value.message
    ck.close()


# ---- class 9: disk full ---------------------------------------------------------------------
def test_a_failed_checkpoint_save_is_one_clear_error(tmp_path, monkeypatch, capfd):
    pytest.importorskip("orbax.checkpoint")
    from archc.training.jax_loop import Checkpoints
    state = {"w": np.arange(4, dtype=np.float32)}
    ck = Checkpoints(str(tmp_path / "ck"))
    # Orbax's CheckpointManager removes leftover temporary folders in a background thread
    # started by its constructor, and its own save waits for that first. This fake save does
    # not, so wait here: else that thread may find the fake's folder and remove it at the
    # same time as Checkpoints does (seen once: FileNotFoundError in orbax's rmtree).
    getattr(ck.manager, "_maybe_await_cleanup_tmp_directory", lambda: None)()

    def full(*a, **k):
        (tmp_path / "ck" / "2.orbax-checkpoint-tmp").mkdir()
        raise ValueError("RESOURCE_EXHAUSTED: Error writing \"w/0\": Failed to write 310 bytes "
                         "to file 7: No space left on device [os_error_code='28']")
    with monkeypatch.context() as m:
        m.setattr(ck.manager, "save", full)
        with pytest.raises(ArchError) as info:
            ck.save(2, state, {"epoch": 2})
    assert info.value.format() == (
        f"error: cannot write checkpoint {tmp_path / 'ck' / '2'}: No space left on device\n"
        "hint: free some space on that disk, then rerun with --resume: the run continues "
        "after its last complete checkpoint")
    assert os.listdir(tmp_path / "ck") == []  # the partial folder is removed
    ck.save(2, state, {"epoch": 2})  # space again: it works
    assert ck.latest() == 2
    ck.close()
    assert guard.storage_reason(OSError(errno.EROFS, "x")) == "Read-only file system"
    assert guard.storage_reason(ValueError("shape mismatch")) is None


def test_a_full_disk_during_a_real_save(tmp_path, capfd):
    """On a real full file system (a 1 MiB tmpfs, where this test may mount one)."""
    pytest.importorskip("orbax.checkpoint")
    from archc.training.jax_loop import Checkpoints
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs",
                                            str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here")
    try:
        st = os.statvfs(mnt)
        (mnt / "fill").write_bytes(b"x" * (st.f_bavail * st.f_frsize - 40_000))
        ck = Checkpoints(str(mnt / "ck"))
        state = {"w": np.arange(50_000, dtype=np.float32)}
        capfd.readouterr()
        with pytest.raises(ArchError) as info:
            ck.save(1, state, {"epoch": 1})
        assert "No space left on device" in info.value.message
        ck.close()
        err = capfd.readouterr().err
        assert "Traceback" not in err and "ERROR:absl" not in err, err[:2000]
        (mnt / "fill").unlink()
        ck = Checkpoints(str(mnt / "ck"))
        ck.save(1, state, {"epoch": 1})
        assert ck.latest() == 1
        ck.close()
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


# ---- class 7: the JAX compilation cache folder ----------------------------------------------
def test_compilation_cache_folder_checks(tmp_path):
    ok = tmp_path / "ok" / "xla"
    assert guard.make_cache_dir(str(ok)) is None and (os.stat(ok).st_mode & 0o777) == 0o700
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    assert "may be written by other users (mode 777)" in guard.make_cache_dir(str(shared))
    assert "may be written by other users" in guard.make_cache_dir(str(shared / "xla"))
    os.symlink(ok, tmp_path / "link")
    assert "is a symbolic link" in guard.make_cache_dir(str(tmp_path / "link"))
    if os.geteuid() == 0:
        other = tmp_path / "other"
        other.mkdir(mode=0o700)
        os.chown(other, 12345, 12345)
        assert "belongs to another user (uid 12345)" in guard.make_cache_dir(str(other))


def test_an_unsafe_compilation_cache_is_not_used(tmp_path, monkeypatch):
    jax = pytest.importorskip("jax")
    from archc.training import jax_loop
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(shared))
    before = jax.config.jax_enable_compilation_cache
    lines = []
    try:
        jax_loop.use_compilation_cache(lines.append)
        assert jax.config.jax_enable_compilation_cache is False
    finally:
        jax.config.update("jax_enable_compilation_cache", before)
    assert lines == [f"archc: not using the XLA compilation cache: {shared} may be written by "
                     "other users (mode 777)"]
