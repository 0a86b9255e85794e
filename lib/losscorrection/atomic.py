"""Safe file writing for results that took hours to compute: a write that is
atomic (readers and a crash see the old file or the new one, never half of
each) and an inter-process lock, so that concurrent sweeps appending to the
same results store, T̂ file or checkpoint never lose each other's runs.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

__all__ = ["LockHeld", "atomic_write", "atomic_write_text", "locked"]


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None], mode: int = 0o644) -> Path:
    """Write ``path`` through ``write(handle)`` on a temporary file in the same
    folder, flushed to disk and renamed over ``path``; the temporary file is
    removed on any failure. Concurrent writers each rename their own complete
    file: the last one wins."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """:func:`atomic_write` of a UTF-8 text."""
    return atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


class LockHeld(RuntimeError):
    """:func:`locked` was asked not to wait, and another process holds the lock."""


@contextlib.contextmanager
def locked(path: str | os.PathLike, wait: bool = True) -> Iterator[None]:
    """Hold an exclusive inter-process lock on ``<path>.lock`` (created when
    absent, never removed) while the block runs: a read-modify-write of
    ``path`` inside it cannot interleave with another process's. With
    ``wait=False``, raise :class:`LockHeld` at once when another process (or
    another open handle of this one) holds it. POSIX advisory locks
    (``fcntl.flock``): Linux and macOS."""
    lock_path = Path(f"{path}.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+b") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise LockHeld(f"{lock_path} is held by another process") from None
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
