"""losscorrection: forward and backward loss correction for label noise.

A companion library to Patrini, Rozza, Menon, Nock and Qu, "Making Deep Neural
Networks Robust to Label Noise: a Loss Correction Approach" (CVPR 2017).

Modules: :mod:`~losscorrection.noise` (noise matrices T, label corruption),
:mod:`~losscorrection.losses` (corrected losses and baselines) and
:mod:`~losscorrection.estimation` (the anchor-point estimator of T).
"""

from . import estimation, losses, noise

__version__ = "0.1.0"
__all__ = ["estimation", "losses", "noise", "__version__"]
