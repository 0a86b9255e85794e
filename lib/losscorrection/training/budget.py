"""What a training would cost before it starts: an estimate of the wall time of
a set of runs from measured throughput (runs already stored on the same kind
of device: of the same network, else of a sibling network scaled by the ratio
of the two networks' reference measurements, else those references), so that
the book never starts a training it cannot finish in its budget and says
instead how long the missing cells would take, and how to run them (the
experiments of the paper's Section 5).
"""

from __future__ import annotations

import math

import pandas as pd

from .experiments import Experiment, Schedule

__all__ = ["CPU_BF16_REFERENCES", "CPU_FP32_SLOWDOWN", "REFERENCE_SECONDS", "describe_duration", "estimate_seconds"]

# Seconds per model-epoch per 1,000 training examples with runs batched as the
# trainer batches them, from benchmarks/ (README "Speed"): the 2-core CPU (fp32
# for the MLP and the embedding model, the latter through its compiled kernel on one thread; bf16
# autocast and channels-last for the ResNets, the fp32 figures scaled by the
# measured 2.3x of ResNet-14; the LSTM with bf16 autocast) and one H100 (bf16
# autocast for the ResNets). Networks without a measurement on a device are left out.
REFERENCE_SECONDS: dict[str, dict[str, float]] = {
    "cpu": {"mlp": 0.0061, "imdb_embedding": 0.039, "imdb_lstm": 67.0, "resnet14": 0.77, "resnet32": 1.75,
            "resnet44": 2.3},
    "cuda": {"mlp": 0.0012, "resnet14": 0.0087, "resnet32": 0.013, "resnet44": 0.017},
}

# The CPU references above that were measured under bf16 autocast, and what fp32
# costs instead, on a CPU without native bf16 arithmetic: ResNet-14 trains 1,435
# images/s with bf16 and channels-last against 878 in fp32 channels-last on the
# same CPU (benchmarks/README.md). That ratio is applied to the LSTM too.
CPU_BF16_REFERENCES = frozenset({"imdb_lstm", "resnet14", "resnet32", "resnet44"})
CPU_FP32_SLOWDOWN = 1435 / 878


def estimate_seconds(
    experiment: Experiment, runs: int, schedule: Schedule, train_size: int, device_type: str,
    stored: pd.DataFrame | None = None, bf16: bool | None = None,
) -> float:
    """Estimated wall time of ``runs`` runs of ``experiment`` for ``schedule.epochs``
    epochs on ``train_size`` examples on a ``device_type`` (``cpu`` or ``cuda``).

    ``stored`` holds rows of the results store (any experiments; the columns
    ``model``, ``device``, ``precision``, ``epochs``, ``train_size`` and
    ``wall_seconds`` are read). Only rows that ran on the same kind of device,
    with the same training size (a run on a few examples is mostly overhead,
    so it says nothing of a full one) and, when ``bf16`` is given, the same
    precision count. In this order:

    1. rows of the same network: their median training time per epoch and example;
    2. rows of other networks with a reference on this device: their median
       time per epoch and example, each scaled by the ratio of the two
       networks' :data:`REFERENCE_SECONDS`, so that a run measured on this
       machine calibrates the references of its siblings (ResNet-32 from a
       stored ResNet-14 run);
    3. :data:`REFERENCE_SECONDS` (``inf`` for a network without a reference).

    A CPU reference measured with bf16 is scaled by :data:`CPU_FP32_SLOWDOWN`
    for an fp32 run (``bf16=False``)."""
    references = REFERENCE_SECONDS.get(device_type, {})
    if stored is not None and not stored.empty:
        same = stored["device"].astype(str).str.startswith(device_type) & (stored["train_size"] == train_size)
        if bf16 is not None:
            same &= stored["precision"] == ("bf16" if bf16 else "fp32")
        rows = stored[same]
        per_epoch_example = rows["wall_seconds"] / (rows["epochs"] * rows["train_size"])
        own = rows["model"] == experiment.model
        if own.any():
            return float(runs * schedule.epochs * train_size * per_epoch_example[own].median())
        if experiment.model in references:
            sibling = rows["model"].isin(list(references))
            if sibling.any():
                scale = references[experiment.model] / rows.loc[sibling, "model"].map(references)
                return float(runs * schedule.epochs * train_size * (per_epoch_example[sibling] * scale).median())
    per_thousand = references.get(experiment.model, math.inf)
    if device_type == "cpu" and bf16 is False and experiment.model in CPU_BF16_REFERENCES:
        per_thousand *= CPU_FP32_SLOWDOWN
    return runs * schedule.epochs * train_size / 1000 * per_thousand


def describe_duration(seconds: float) -> str:
    """``"about 20 h"``, ``"about 15 min"``, ``"about 40 s"``."""
    if not math.isfinite(seconds):
        return "an unknown time"
    if seconds >= 5400:
        return f"about {seconds / 3600:.0f} h"
    if seconds >= 90:
        return f"about {seconds / 60:.0f} min"
    return f"about {max(seconds, 1):.0f} s"
