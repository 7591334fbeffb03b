"""What `archc train` checks around its checkpoints and caches:

  - checksums: every array of a checkpoint is hashed (SHA-256 of dtype, shape and bytes)
    into the checkpoint's metadata when it is written, and verified when it is resumed, so
    that a flipped byte is an error rather than a silently changed weight;
  - storage errors: a checkpoint that cannot be written (disk full, read-only, permission)
    is one clear ArchError, with Orbax's own logging of the failure silenced;
  - the JAX compilation cache (use_compilation_cache): XLA loads compiled programs (machine
    code) from it, so it is used only if the folder and its parent belong to this user and no
    one else may write them.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import re
import stat
import threading

import numpy as np

from archc.compiler import ArchError

from .cache import user_cache

from .options import option


# ---- checksums ---------------------------------------------------------------------------------
def digest(a) -> str:
    a = np.ascontiguousarray(np.asarray(a))
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.view(np.uint8).reshape(-1) if a.size else b"")
    return h.hexdigest()


def checksums(arrays: dict) -> dict:
    """{name: digest} of a flat {name: array} mapping."""
    return {k: digest(v) for k, v in sorted(arrays.items())}


def verify(arrays: dict, expected: dict | None, where: str) -> None:
    """Raise a 'damaged checkpoint' ArchError unless `arrays` have the digests `expected`."""
    from .run_dir import corrupt_checkpoint
    if expected is None:
        raise corrupt_checkpoint(where, ValueError("its metadata holds no checksums (it was "
                                                   "not written by this version of archc)"))
    got = checksums(arrays)
    bad = sorted(k for k in set(got) | set(expected) if got.get(k) != expected.get(k))
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise corrupt_checkpoint(where, ValueError(f"checksum mismatch: {shown}"))


# ---- storage errors ----------------------------------------------------------------------------
_REASONS = ((errno.ENOSPC, "No space left on device"), (errno.EDQUOT, "Disk quota exceeded"),
            (errno.EROFS, "Read-only file system"), (errno.EACCES, "Permission denied"))


def storage_reason(exc: BaseException) -> str | None:
    """The storage failure behind `exc` (an OSError anywhere in its chain, or the errno text
    tensorstore puts in its messages), or None for any other error."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        for code, words in _REASONS:
            if isinstance(exc, OSError) and exc.errno == code:
                return words
            if words in str(exc) or re.search(rf"os_error_code='{code}'", str(exc)):
                return words
        exc = exc.__cause__ or exc.__context__
    return None


def storage_error(where: str, reason: str) -> ArchError:
    hint = f"choose an {option('out')} you can write to"
    if reason in ("No space left on device", "Disk quota exceeded"):
        hint = f"free some space on that disk, then rerun with {option('resume', True)}: the " \
               "run continues after its last complete checkpoint"
    return ArchError(f"cannot write checkpoint {where}: {reason}", hint=hint)


@contextlib.contextmanager
def quiet_orbax():
    """Orbax logs a failed save with several tracebacks (absl logging, and its threads):
    silenced while archc turns the failure into one error."""
    loggers = [logging.getLogger(n) for n in ("absl", "orbax", "jax._src.compilation_cache")]
    levels = [lg.level for lg in loggers]
    hook = threading.excepthook
    for lg in loggers:
        lg.setLevel(logging.CRITICAL + 1)
    threading.excepthook = lambda args: None
    try:
        yield
    finally:
        threading.excepthook = hook
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


# ---- the JAX compilation cache -----------------------------------------------------------------
def unsafe_cache_dir(folder: str) -> str | None:
    """Why `folder` must not be used as a cache of compiled code, or None if it may: it (and
    its parent) must be a real folder of this user that no one else may write."""
    uid = os.geteuid()
    for path in (folder, os.path.dirname(os.path.abspath(folder))):
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            return f"{path} cannot be examined ({exc.strerror})"
        if stat.S_ISLNK(st.st_mode):
            return f"{path} is a symbolic link"
        if not stat.S_ISDIR(st.st_mode):
            return f"{path} is not a folder"
        if st.st_uid != uid:
            return f"{path} belongs to another user (uid {st.st_uid})"
        if st.st_mode & 0o022:
            return f"{path} may be written by other users (mode {stat.S_IMODE(st.st_mode):o})"
    return None


def make_cache_dir(folder: str) -> str | None:
    """Create `folder` (mode 0700) if missing; why it cannot be used, or None."""
    reason = unsafe_cache_dir(folder)
    if reason:
        return reason
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
    except OSError as exc:
        return f"{folder} cannot be created ({exc.strerror})"
    return unsafe_cache_dir(folder)


def use_compilation_cache(log=print) -> None:
    """Keep XLA's compiled programs on disk (JAX's persistent compilation cache), so a resumed
    or repeated run skips most compilation. $JAX_COMPILATION_CACHE_DIR wins if set. XLA loads
    machine code from there: a folder (or parent) that another user owns or may write is
    not used (one line says why)."""
    import jax
    folder = os.environ.get("JAX_COMPILATION_CACHE_DIR") or user_cache("xla")
    reason = make_cache_dir(folder)
    if reason:
        log(f"archc: not using the XLA compilation cache: {reason}")
        jax.config.update("jax_enable_compilation_cache", False)
        return
    jax.config.update("jax_compilation_cache_dir", folder)
