"""Where the data lives and how it is read and cached: the data root (the
``data_root`` argument, else ``$LOSSCORR_DATA``, else ``./data``),
:class:`MissingDataError` with its one-line message (the missing path(s), the
accepted layouts and where to get the data), reading gzipped files and tarball
members, and the atomic write-then-rename of a cache of decoded arrays
(``.npz``) next to the data or in the user cache folder (``$LOSSCORR_CACHE``).
This is the plumbing under the data sets of the paper's experiments (Section 5);
it implements no part of the method itself.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import pickle
import re
import tarfile
import warnings
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from ..atomic import atomic_write

__all__ = ["CACHE_ENV", "DATA_ENV", "CorruptDataError", "MissingDataError", "reading", "resolve_data_root"]

DATA_ENV = "LOSSCORR_DATA"
CACHE_ENV = "LOSSCORR_CACHE"


class MissingDataError(FileNotFoundError):
    """A data set file is missing.

    The message is one line: the missing path(s), the accepted layouts and where
    to get the data. ``missing`` holds the missing paths as strings.
    """

    def __init__(self, message: str, missing: Iterable[str | Path] = ()) -> None:
        super().__init__(message)
        self.missing = tuple(str(p) for p in missing)

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def _missing(
    dataset: str, missing: Sequence[str | Path], accepted: str, get: str, alternative: str = ""
) -> MissingDataError:
    names = ", ".join(str(p) for p in missing) + (f" (or else {alternative})" if alternative else "")
    return MissingDataError(
        f"{dataset} data not found: missing {names}; accepted layouts: {accepted}; {get}", missing
    )


class CorruptDataError(ValueError):
    """A data set file exists but cannot be read (truncated, damaged, or not the
    expected format). The message is one line: the file, what is wrong and
    what to do."""

    def __init__(self, path: str | Path, problem: str, fix: str) -> None:
        super().__init__(f"{path}: {problem}; {fix}")
        self.path = str(path)


# What a damaged file raises while it is read: gzip, zip and tar archives cut
# short or corrupted, pickles and images that do not decode.
_READ_ERRORS = (EOFError, OSError, zlib.error, tarfile.TarError, pickle.UnpicklingError, zipfile.BadZipFile)


@contextlib.contextmanager
def reading(path: str | Path, fix: str) -> Iterator[None]:
    """Turn a read failure of the existing file ``path`` inside the block into a
    :class:`CorruptDataError` that names the file and says ``fix`` (what to do).
    A file that is absent still raises :class:`FileNotFoundError`."""
    try:
        yield
    except (FileNotFoundError, PermissionError):
        raise
    except _READ_ERRORS as err:
        detail = str(err) or type(err).__name__
        raise CorruptDataError(path, f"cannot be read, it is truncated or damaged ({detail})", fix) from None


def resolve_data_root(data_root: str | Path | None = None) -> Path:
    """The data folder: ``data_root``, else ``$LOSSCORR_DATA``, else ``./data`` (absolute)."""
    if data_root is None or str(data_root) == "":
        data_root = os.environ.get(DATA_ENV) or "data"
    return Path(data_root).expanduser().resolve()


def _read_bytes(path: Path) -> bytes:
    """A file's bytes, gunzipped when it starts with the gzip magic number."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return raw


def _tar_members(source: Path, pattern: re.Pattern) -> Iterator[tuple[re.Match, bytes]]:
    """``(match, content)`` of every regular file of a tarball whose name matches ``pattern``."""
    with tarfile.open(source, "r:*") as tf:
        for member in tf:
            match = pattern.search(member.name)
            if member.isfile() and match:
                handle = tf.extractfile(member)
                if handle is not None:
                    yield match, handle.read()


def source_stamp(source: Path, pattern: re.Pattern) -> str:
    """An identity of a data source for naming caches: a file's size and
    modification time, or the count, total size and latest modification time
    of a folder's files whose path matches ``pattern``; a changed source gets a
    new name."""
    if source.is_file():
        st = source.stat()
        return f"tar-{st.st_size}-{st.st_mtime_ns}"
    size = count = mtime = 0
    for path in source.rglob("*"):
        if pattern.search(path.as_posix()) and path.is_file():
            st = path.stat()
            size, count, mtime = size + st.st_size, count + 1, max(mtime, st.st_mtime_ns)
    return f"dir-{count}-{size}-{mtime}"


def _user_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "losscorrection").expanduser()


def _writable(folder: Path) -> bool:
    """Whether ``folder`` may be written: it allows writing for the current user and
    some write permission bit is set (a folder marked read-only counts as
    read-only even for root)."""
    try:
        return os.access(folder, os.W_OK) and bool(folder.stat().st_mode & 0o222)
    except OSError:
        return False


def _read_cache(path: Path, keys: Sequence[str]) -> dict[str, np.ndarray] | None:
    """The arrays ``keys`` of the ``.npz`` file ``path``, or None when it cannot be read."""
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in keys}
    except (OSError, KeyError, ValueError, EOFError):
        return None


def _write_cache(arrays: dict[str, np.ndarray], folders: list[Path], name: str, what: str) -> Path | None:
    """Write ``arrays`` as the ``.npz`` file ``name`` in the first of ``folders`` that
    can be written (atomically: a temporary file in that folder renamed over ``name``) and
    return its path; when none can, warn that the ``what`` could not be written
    and return None."""
    for folder in folders:
        if folder.exists() and not _writable(folder):
            continue
        try:
            return atomic_write(folder / name, lambda handle: np.savez(handle, **arrays))
        except OSError:
            continue
    warnings.warn(f"could not write the {what} to any of {folders}", stacklevel=3)
    return None
