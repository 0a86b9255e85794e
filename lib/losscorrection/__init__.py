"""losscorrection: forward and backward loss correction for label noise.

A companion library to Patrini, Rozza, Menon, Nock and Qu, "Making Deep Neural
Networks Robust to Label Noise: a Loss Correction Approach" (CVPR 2017).

Modules: :mod:`~losscorrection.noise` (noise matrices T, label corruption),
:mod:`~losscorrection.losses` (corrected losses and baselines) and
:mod:`~losscorrection.estimation` (the anchor-point estimator of T) are
imported with the package; the others (``data``, ``models``, ``training``,
``store``, ``results``, ``report``, ...) on first use, so that
``import losscorrection as lc`` stays light and ``lc.training.run_cells``
still works.
"""

import importlib
from types import ModuleType

from . import estimation, losses, noise

__version__ = "0.1.0"
__all__ = ["estimation", "losses", "noise", "__version__"]

_LAZY_SUBMODULES = frozenset({
    "agreement", "atomic", "cli", "data", "methods", "models", "report", "results", "store", "training",
})


def __getattr__(name: str) -> ModuleType:
    """``lc.<submodule>`` imports the submodule on first use (PEP 562)."""
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
