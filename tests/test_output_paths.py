"""Output paths (issue 12, class 5): `archc build -o` and every other file archc writes go
through archc/_files.write_atomic: clear errors (exit 2), never a non-regular file replaced,
nothing outside the output path touched, no temporary file left behind."""
from __future__ import annotations

import errno
import os
import signal
import stat
import subprocess
import sys

import pytest

from archc import _cli, _files
from archc.compiler import ArchError


def build(tmp_path, monkeypatch, capsys, out):
    monkeypatch.chdir(tmp_path)
    rc = _cli.main(["build", "shallow_sqnxt", "-o", str(out)])
    o, err = capsys.readouterr()
    assert "Traceback" not in err and "internal error" not in err, err
    return rc, err


def litter(folder):
    return [n for n in os.listdir(folder) if n.startswith(".archc-")]


def test_missing_folder(tmp_path, monkeypatch, capsys):
    rc, err = build(tmp_path, monkeypatch, capsys, "nowhere/m.py")
    assert rc == 2 and err.startswith("error: cannot write 'nowhere/m.py': the folder "
                                      "'nowhere' does not exist"), err
    assert not (tmp_path / "nowhere").exists()


def test_onto_a_folder(tmp_path, monkeypatch, capsys):
    (tmp_path / "d").mkdir()
    for out in ("d", "d/"):
        rc, err = build(tmp_path, monkeypatch, capsys, out)
        assert rc == 2 and "cannot write" in err and "folder" in err, err
    assert os.listdir(tmp_path / "d") == []


def test_symlink_fifo_and_device_are_never_replaced(tmp_path, monkeypatch, capsys):
    target = tmp_path / "target.py"
    target.write_text("keep")
    os.symlink(target, tmp_path / "link.py")
    os.mkfifo(tmp_path / "fifo.py")
    cases = {"link.py": "it is a symbolic link", "fifo.py": "it is not a regular file"}
    if os.path.exists("/dev/null"):
        cases["/dev/null"] = "it is not a regular file"
    for out, why in cases.items():
        rc, err = build(tmp_path, monkeypatch, capsys, out)
        assert rc == 2 and why in err, err
    assert os.path.islink(tmp_path / "link.py") and target.read_text() == "keep"
    assert stat.S_ISFIFO(os.lstat(tmp_path / "fifo.py").st_mode)
    if os.path.exists("/dev/null"):
        assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert litter(tmp_path) == []


def test_a_regular_file_is_replaced_whole(tmp_path, monkeypatch, capsys):
    (tmp_path / "m.py").write_text("old")
    rc, err = build(tmp_path, monkeypatch, capsys, "m.py")
    assert rc == 0, err
    assert "class" in (tmp_path / "m.py").read_text() and litter(tmp_path) == []
    assert stat.S_IMODE(os.stat(tmp_path / "m.py").st_mode) == 0o666 & ~_umask()


def _umask():
    u = os.umask(0)
    os.umask(u)
    return u


@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "No space left on device"),
                                         (errno.EROFS, "Read-only file system"),
                                         (errno.EACCES, "Permission denied")])
def test_write_failures_are_clear_and_leave_nothing(tmp_path, monkeypatch, code, words):
    def fail(*a, **k):
        raise OSError(code, os.strerror(code))
    monkeypatch.setattr(_files.os, "replace", fail)
    with pytest.raises(ArchError) as info:
        _files.write_atomic(tmp_path / "m.py", "text")
    assert info.value.format().startswith(f"error: cannot write '{tmp_path / 'm.py'}': {words}")
    assert os.listdir(tmp_path) == []


def test_read_only_folder(tmp_path, monkeypatch, capsys):
    if os.geteuid() == 0:  # root writes anyway; the monkeypatched EROFS test covers it
        pytest.skip("root ignores folder permissions")
    (tmp_path / "ro").mkdir()
    os.chmod(tmp_path / "ro", 0o555)
    rc, err = build(tmp_path, monkeypatch, capsys, "ro/m.py")
    assert rc == 2 and "Permission denied" in err


def test_stale_temporary_files_of_dead_processes_are_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f"{_files.PREFIX}{_files._host()}-{dead.pid}-0000.tmp"
    mine = tmp_path / f"{_files.PREFIX}{_files._host()}-{os.getpid()}-0000.tmp"
    other_host = tmp_path / f"{_files.PREFIX}00000000-{dead.pid}-0000.tmp"
    for p in (stale, mine, other_host):
        p.write_text("x")
    _files.write_atomic(tmp_path / "m.py", "text")
    assert sorted(litter(tmp_path)) == sorted([mine.name, other_host.name])


def test_a_killed_build_leaves_no_temporary_file(tmp_path):
    """SIGTERM during the write: the CLI turns it into SystemExit and the temporary file is
    removed. (SIGKILL cannot be caught: see the test above for what clears those.)"""
    script = ("import os, signal, sys, time\n"
              "from archc import _cli, _files\n"
              "real = _files._write_all\n"
              "def slow(f, data):\n"
              "    real(f, data)\n"
              "    print('writing', flush=True)\n"
              "    time.sleep(30)\n"
              "_files._write_all = slow\n"
              "_files._write_unnamed = lambda folder, data: None\n"
              "sys.exit(_cli.main(['build', 'shallow_sqnxt', '-o', sys.argv[1]]))\n")
    with subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "m.py")],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as p:
        assert p.stdout.readline() == "writing\n"
        assert len(litter(tmp_path)) == 1  # the named temporary file exists while writing
        p.send_signal(signal.SIGTERM)
        err = p.communicate(timeout=30)[1]
    assert p.returncode == 128 + signal.SIGTERM, err
    assert os.listdir(tmp_path) == []


def test_the_unnamed_file_gets_a_name_only_when_complete(tmp_path, monkeypatch):
    """Where /proc links work (here emulated with linkat(AT_EMPTY_PATH), which needs root),
    no named temporary file exists while the content is written."""
    import ctypes
    if os.geteuid() != 0 or not hasattr(os, "O_TMPFILE"):
        pytest.skip("needs root for linkat(AT_EMPTY_PATH) and O_TMPFILE")
    libc = ctypes.CDLL(None, use_errno=True)

    def link(src, dst, follow_symlinks=True):
        fd = int(src.rsplit("/", 1)[1])
        if libc.linkat(fd, b"", -100, os.fsencode(dst), 0x1000):  # AT_FDCWD, AT_EMPTY_PATH
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    seen = []
    real = _files._write_all

    def write_all(f, data):
        real(f, data)
        seen.append(sorted(os.listdir(tmp_path)))
    monkeypatch.setattr(_files.os, "link", link)
    monkeypatch.setattr(_files, "_write_all", write_all)
    monkeypatch.setattr(_files, "_NO_TMPFILE", set())
    _files.write_atomic(tmp_path / "m.py", "text")
    assert seen == [[]]  # written, unnamed: nothing in the folder yet
    assert (tmp_path / "m.py").read_text() == "text" and litter(tmp_path) == []
    assert stat.S_IMODE(os.stat(tmp_path / "m.py").st_mode) == 0o666 & ~_umask()
