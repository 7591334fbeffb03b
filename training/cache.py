"""The decoded-data cache of `archc train` (training/data.py): one folder per data set in the
user's cache folder ($ARCHC_CACHE_DIR, which `--cache-dir` sets; else $XDG_CACHE_HOME/archc/data,
else ~/.cache/archc/data), named after the data set and a hash of its absolute path, holding one
.npy per array and a meta.json. An entry is keyed by the source's size and modification time
and written atomically; processes decoding one source at once take a lock, so that it is
decoded once. No pickle is read or written.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile

import numpy as np

from archc.compiler import ArchError

from .decode import max_decoded_bytes

CACHE_VERSION = 1
ARRAYS = ("train_x", "train_y", "test_x", "test_y")


def fingerprint(path: str) -> dict:
    """Size and mtime of the source (for a folder: of every file in it)."""
    if os.path.isfile(path):
        st = os.stat(path)
        return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    size, latest, count = 0, 0, 0
    for dirpath, _, files in os.walk(path):
        if ".archc-cache" in dirpath:
            continue
        for name in files:
            st = os.stat(os.path.join(dirpath, name))
            size, latest, count = size + st.st_size, max(latest, st.st_mtime_ns), count + 1
    return {"size": size, "mtime_ns": latest, "files": count}


def user_cache(name: str) -> str:
    """The user's cache folder for archc's `name` ("data", "xla"):
    $XDG_CACHE_HOME/archc/NAME, else ~/.cache/archc/NAME."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "archc", name)


def cache_dirs(path: str) -> list[str]:
    """Where the cache of `path` may live, in order of preference: its entry in
    $ARCHC_CACHE_DIR (which `--cache-dir` sets), else in the user's cache folder."""
    path = os.path.abspath(path).rstrip("/")
    key = hashlib.sha256(os.fsencode(path)).hexdigest()[:16]  # any name the system allows
    root = os.environ.get("ARCHC_CACHE_DIR") or user_cache("data")
    return [os.path.join(root, f"{os.path.basename(path)}-{key}")]


def load(directory: str, meta: dict) -> tuple[dict, tuple] | None:
    """The cached arrays (ARRAYS) and class names, or None when the cache is absent, stale or
    damaged (a FIFO, a meta.json that is not a JSON object ...): it is then rebuilt."""
    from archc._checks import read_json, regular_file
    try:
        stored = read_json(os.path.join(directory, "meta.json"))
        if {k: stored.get(k) for k in meta} != meta or not isinstance(stored.get("classes"),
                                                                        list):
            return None
        size = sum(regular_file(os.path.join(directory, a + ".npy")).st_size for a in ARRAYS)
        if size > 2 * max_decoded_bytes():  # images and labels: never more than decoding
            return None
        arrays = {a: np.load(os.path.join(directory, a + ".npy"), allow_pickle=False)
                  for a in ARRAYS}
    except (ArchError, OSError, ValueError):
        return None
    return arrays, tuple(stored["classes"])


def _writable(directory: str) -> bool:
    """Writable by mode bits as well as by access(): root may write anywhere, but a folder
    marked read-only (like ../shared) is left alone."""
    try:
        return os.access(directory, os.W_OK) and bool(os.stat(directory).st_mode & 0o222)
    except OSError:
        return False


def save(directory: str, arrays: dict, classes: tuple, meta: dict) -> bool:
    """Write the arrays and meta.json into `directory`, atomically (a temporary folder
    renamed into place); False where it cannot be written."""
    parent = os.path.dirname(directory)
    try:
        os.makedirs(parent, exist_ok=True)
        if not _writable(parent):
            return False
        tmp = tempfile.mkdtemp(prefix=".archc-cache-tmp-", dir=parent)
    except OSError:
        return False
    try:
        for a in ARRAYS:
            np.save(os.path.join(tmp, a + ".npy"), arrays[a], allow_pickle=False)
        with open(os.path.join(tmp, "meta.json"), "w") as f:
            json.dump({**meta, "classes": list(classes)}, f, indent=1)
        if os.path.isdir(directory):
            shutil.rmtree(directory)
        os.replace(tmp, directory)
        return True
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        return False


@contextlib.contextmanager
def decode_lock(path: str, log=None):
    """Hold an exclusive lock on decoding `path` (a file in the per-user cache folder; the
    system drops it when the process ends, however it ends). Where no lock can be taken --
    the folder is not writable, the system has no flock -- decoding goes on without one."""
    try:
        import fcntl
        mine = cache_dirs(path)[-1]   # the per-user cache folder's entry for `path`
        os.makedirs(os.path.dirname(mine), exist_ok=True)
        fd = os.open(mine + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    except (ImportError, OSError):
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            if log:
                log(f"waiting for another process that is decoding {path}")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
