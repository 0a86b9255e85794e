"""The compiled CPU kernel of :mod:`~losscorrection.models.gathered`, built on first use.

``gathered_kernel.c`` (plain C99, no PyTorch headers) is compiled with the
system's C compiler (``$CC``, else ``cc`` or ``gcc``) for this CPU
(``-O3 -march=native``) into the user cache folder (``$LOSSCORR_CACHE``, else
``~/.cache/losscorrection``), once per source, compiler and CPU, and loaded
with :mod:`ctypes`. Compiling takes about a second. Where there is no
compiler, the compile fails or ``LOSSCORR_NATIVE=0`` is set, :func:`kernel`
returns ``None`` and the model runs its PyTorch formulation, which gives the
same numbers (``tests/test_models.py``); :func:`status` says which is used
and why.

Both kernel functions allocate their scratch memory (classes × dim floats) on
the heap once per call; a size the kernel cannot hold raises a one-line
:class:`ValueError`, a failed allocation a :class:`MemoryError`.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

from ..data.files import _user_cache_dir

__all__ = ["DISABLE_ENV", "kernel", "status"]

DISABLE_ENV = "LOSSCORR_NATIVE"  # "0": never compile or load the kernel
SOURCE = Path(__file__).with_name("gathered_kernel.c")
FLAGS = ("-O3", "-march=native", "-std=c99", "-shared", "-fPIC")

_I64, _PTR = ctypes.c_int64, ctypes.c_void_p
_SIGNATURES = {  # (arguments, positions of L, D and C among them), in the order of gathered_kernel.c
    # ids, n, L, table, V, D, keep, weight, C, padding_id, logits, lead, prefix
    "gathered_forward": ((_PTR, _I64, _I64, _PTR, _I64, _I64, _PTR, _PTR, _I64, _I64, _PTR, _PTR, _PTR), (2, 5, 8)),
    # ids, lead, n, L, table, D, keep, weight, prefix, C, grad, padding_id, grad_table, grad_weight, lead_grad
    "gathered_backward": ((_PTR, _PTR, _I64, _I64, _PTR, _I64, _PTR, _PTR, _PTR, _I64, _PTR, _I64,
                           _PTR, _PTR, _PTR), (3, 5, 9)),
}
BAD_SIZE, NO_MEMORY = -2, -3  # GATHERED_BAD_SIZE and GATHERED_NO_MEMORY of gathered_kernel.c


def _raise_on_failure(sizes: tuple[int, int, int]):
    """A ctypes ``errcheck`` turning the kernel's failure codes into one-line errors."""

    def check(result: int, function, arguments: tuple) -> int:
        length, dim, classes = (arguments[k] for k in sizes)
        if result == BAD_SIZE:
            raise ValueError(f"{function.__name__}: classes, dim and length must be positive with classes × dim "
                             f"floats addressable, got classes={classes}, dim={dim}, length={length}")
        if result == NO_MEMORY:
            raise MemoryError(f"{function.__name__}: cannot allocate {classes} × {dim} floats of scratch memory")
        return result

    return check


def _cpu_identity() -> str:
    """The CPU's model and feature flags (what ``-march=native`` compiles for)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor()
    return "".join(sorted({line for line in lines if line.startswith(("model name", "flags"))}))


@lru_cache(maxsize=None)
def _load() -> tuple[ctypes.CDLL | None, str]:
    if os.environ.get(DISABLE_ENV, "1") == "0":
        return None, f"PyTorch formulation ({DISABLE_ENV}=0)"
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None, "PyTorch formulation (no C compiler found)"
    source = SOURCE.read_bytes()
    key = hashlib.sha256(b"\0".join([source, " ".join(FLAGS).encode(), compiler.encode(),
                                     platform.machine().encode(), _cpu_identity().encode()])).hexdigest()[:16]
    path = _user_cache_dir() / "native" / f"gathered-{key}.so"
    if not path.exists():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=path.parent) as scratch:
                built = Path(scratch) / path.name
                subprocess.run([compiler, *FLAGS, str(SOURCE), "-o", str(built)], check=True,
                               capture_output=True, timeout=120)
                os.replace(built, path)  # atomic: concurrent builders leave one whole file
        except (OSError, subprocess.SubprocessError) as error:
            return None, f"PyTorch formulation (compiling {SOURCE.name} failed: {type(error).__name__})"
    try:
        library = ctypes.CDLL(str(path))
    except OSError as error:
        return None, f"PyTorch formulation (loading {path.name} failed: {error})"
    for name, (argtypes, sizes) in _SIGNATURES.items():
        function = getattr(library, name)
        function.argtypes, function.restype, function.errcheck = argtypes, _I64, _raise_on_failure(sizes)
    return library, f"compiled kernel ({path})"


def kernel() -> ctypes.CDLL | None:
    """The loaded kernel library (functions ``gathered_forward`` and
    ``gathered_backward``), or ``None`` where it cannot be had."""
    return _load()[0]


def status() -> str:
    """Which formulation the CPU path of the embedding model uses, and why."""
    return _load()[1]
