"""Atomic file writes: every file archc writes (generated modules, weights, checkpoints of the
torch loop, metrics, plots) goes through `write_atomic`, so a failure or a kill leaves the
old file or the new one, never half of one, and nothing else.

The rules for the output path, checked before anything is written (`check_not_input`, called
by every command before its work, also refuses an output that is one of its inputs):
  - its folder must exist (archc creates no folders for -o);
  - an existing path must be a regular file: a folder, a symbolic link, a device node, a FIFO
    or a socket is never replaced (as root, `-o /dev/null` would otherwise replace /dev/null);
  - every failure (missing folder, read-only file system, permission, disk full) is an
    ArchError naming the path, and the temporary file is removed.

The content is made in memory first, so a temporary file exists only while its bytes are
written: an unnamed file (Linux O_TMPFILE) that is named only once complete where the file
system allows it, else `.archc-<host>-<pid>-<random>.tmp`, removed on any error or signal
that Python sees (the CLI turns SIGTERM into one). A process killed outright (SIGKILL) can
still leave one behind: every write removes those of processes of this host that no longer
run, so the next write into that folder (a rebuild, a resumed run) clears them.
"""
from __future__ import annotations

import errno
import hashlib
import io
import os
import re
import secrets
import socket
import stat
import tempfile
from typing import BinaryIO, Callable, Union

from archc.compiler import ArchError

Content = Union[str, bytes, Callable[[BinaryIO], None]]
PREFIX, SUFFIX = ".archc-", ".tmp"


def check_output_path(path) -> str:
    """The absolute path to write, or an ArchError saying why `path` cannot be written."""
    path = os.fspath(path)
    shown = path
    if not path or path.endswith(os.sep):
        what = "the path is empty" if not path else "it names a folder, not a file"
        raise ArchError(f"cannot write '{shown}': {what}", hint="give a file name, e.g. "
                        "-o model.py")
    full = os.path.abspath(path)
    try:
        st = os.lstat(full)
    except FileNotFoundError:
        st = None
    except OSError as err:
        raise _error(shown, err) from None
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise ArchError(f"cannot write '{shown}': it is a folder",
                            hint=f"give a file name inside it, e.g. {os.path.join(path, 'x')}")
        if stat.S_ISLNK(st.st_mode):
            raise ArchError(f"cannot write '{shown}': it is a symbolic link, which archc does "
                            "not replace", hint="give the path of the file itself")
        if not stat.S_ISREG(st.st_mode):
            raise ArchError(f"cannot write '{shown}': it is not a regular file (a device, FIFO "
                            "or socket), which archc never replaces",
                            hint="give the path of a regular file")
    folder = os.path.dirname(full)
    if not os.path.isdir(folder):
        raise ArchError(f"cannot write '{shown}': the folder '{os.path.dirname(path) or '.'}' "
                        "does not exist", hint="create it first, or choose another path")
    return full


def same_file(a, b) -> bool:
    """Whether two existing paths name the same file (hard links and symbolic links
    included); False when either does not exist."""
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


def check_not_input(path, inputs, flag: str = "-o") -> None:
    """An ArchError if the output `path` is the same file as one of `inputs` ((what, path)
    pairs, None paths skipped): archc never writes over what it reads."""
    if not path:
        return
    for what, src in inputs:
        if src and os.path.exists(src) and same_file(path, src):
            raise ArchError(f"{flag} '{os.fspath(path)}' is the same file as {what} "
                            f"'{os.fspath(src)}': archc does not write over its input",
                            hint=f"give {flag} another file name")


def check_output_folder(path, flag: str = "--out") -> None:
    """A folder a command writes several files into: refused, before any work, if it exists
    and is not a folder (archc creates it, and its parents, when it does not exist)."""
    if path and os.path.lexists(path) and not os.path.isdir(path):
        raise ArchError(f"{flag} '{os.fspath(path)}' exists and is not a folder",
                        hint=f"give {flag} a new or existing folder")


def write_atomic(path, content: Content) -> None:
    """Write `content` (text, bytes, or a function writing to a binary file) to `path`
    atomically, under the rules of the module docstring."""
    shown = os.fspath(path)
    full = check_output_path(path)
    folder = os.path.dirname(full)
    if isinstance(content, str):
        data = content.encode("utf-8")
    elif isinstance(content, bytes):
        data = content
    else:
        buf = io.BytesIO()
        content(buf)
        data = buf.getvalue()
    tmp = None
    try:
        remove_stale(folder)
        tmp = _write_unnamed(folder, data)
        if tmp is None:
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=_prefix(), suffix=SUFFIX)
            with os.fdopen(fd, "wb") as f:
                os.fchmod(f.fileno(), _mode())  # mkstemp makes 0600: the usual permissions
                _write_all(f, data)
        check_output_path(path)  # again: the path may have changed while writing
        os.replace(tmp, full)
        tmp = None
    except OSError as err:
        raise _error(shown, err) from None
    finally:
        if tmp is not None:
            _unlink(tmp)


def _write_all(f, data: bytes) -> None:
    f.write(data)
    f.flush()
    os.fsync(f.fileno())


def _mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_NO_TMPFILE: set = set()  # devices where an O_TMPFILE file cannot be given a name


def _write_unnamed(folder: str, data: bytes) -> str | None:
    """Write `data` to an unnamed file in `folder` and give it a temporary name once it is
    complete; None where the file system (or /proc) does not allow it."""
    flag = getattr(os, "O_TMPFILE", 0)
    dev = os.stat(folder).st_dev
    if not flag or dev in _NO_TMPFILE or not os.path.isdir("/proc/self/fd"):
        return None
    try:
        fd = os.open(folder, flag | os.O_WRONLY, _mode())
    except OSError:
        _NO_TMPFILE.add(dev)
        return None
    with os.fdopen(fd, "wb") as f:
        _write_all(f, data)
        tmp = os.path.join(folder, _prefix() + secrets.token_hex(4) + SUFFIX)
        try:
            os.link(f"/proc/self/fd/{f.fileno()}", tmp, follow_symlinks=True)
        except OSError as err:
            if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
                raise
            _NO_TMPFILE.add(dev)  # e.g. EXDEV where /proc is mounted apart
            return None
    return tmp


def _host() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _prefix() -> str:
    return f"{PREFIX}{_host()}-{os.getpid()}-"


_STALE = re.compile(r"^\.archc-([0-9a-f]{8})-(\d+)-.*\.tmp$")


def remove_stale(folder: str) -> None:
    """Remove temporary files of archc processes of this host that no longer run."""
    host = _host()
    try:
        names = [e.name for e in os.scandir(folder) if e.name.startswith(PREFIX)]
    except OSError:
        return
    for name in names:
        m = _STALE.match(name)
        if m and m.group(1) == host and not _alive(int(m.group(2))):
            _unlink(os.path.join(folder, name))


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, but another user's
        return True
    return True


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _error(shown: str, err: OSError) -> ArchError:
    reason = err.strerror or str(err)
    hint = None
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        hint = "free some space on that disk and run the command again (archc train: with " \
               "--resume)"
    elif err.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        hint = "choose a path you can write to"
    return ArchError(f"cannot write '{shown}': {reason}", hint=hint)
