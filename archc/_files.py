"""Atomic file writes: every file archc writes (generated modules, weights, checkpoints of the
torch loop, metrics, plots) goes through `write_atomic`, so a failure or a kill leaves the
old file or the new one, never half of one."""
from __future__ import annotations

import os
import tempfile
from typing import BinaryIO, Callable, Union

Content = Union[str, bytes, Callable[[BinaryIO], None]]


def write_atomic(path, content: Content) -> None:
    """Write `content` (text, bytes, or a function writing to a binary file) to a temporary
    file beside `path`, flush it to disk, and rename it onto `path`."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".archc-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if isinstance(content, str):
                f.write(content.encode("utf-8"))
            elif isinstance(content, bytes):
                f.write(content)
            else:
                content(f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
