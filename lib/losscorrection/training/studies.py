"""Two studies beyond the paper, on the CIFAR-10 data we have.

* :func:`jpeg_penalty`: the same 4,000 CIFAR-10 images, lossless and as JPEG
  (:func:`~losscorrection.data.lossless_subset.jpeg_penalty_splits`), each
  used to train and test ResNet-14 with clean cross-entropy under the CIFAR
  protocol. The accuracy gap is what the JPEG copy costs, measured, where the
  full lossless CIFAR-10 is not available.
* :func:`cifar10n_image_dependence`: are CIFAR-10N's human mistakes tied to the
  images, as real annotator errors are, and so is their mapping onto our JPEG
  copy right? ResNet-14 is cross-fitted on the clean labels (each half of the
  training images is scored by a network trained on the other half) and
  :func:`~losscorrection.noise.image_dependence` compares how plausible the
  human labels of mislabelled images look to it against the same labels
  shuffled within each class. A wrong mapping would pair labels with unrelated
  images and leave the statistic at its null.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .. import data as data_module
from ..atomic import atomic_write_text
from ..noise import image_dependence
from ..store import ResultStore, git_commit, timestamp
from .experiments import Cell, Experiment, Schedule, get_experiment, order_seed
from .loop import GroupData, _evaluate, train_group
from .runner import _resolve_profile, build_runs, run_cells
from .runtime import Runtime

__all__ = ["IMAGE_DEPENDENCE_FILE", "JPEG_PENALTY_KEYS", "cifar10n_image_dependence", "jpeg_penalty",
           "jpeg_penalty_rows", "jpeg_penalty_summary"]

JPEG_PENALTY_KEYS = {"lossless": "cifar10first4000_lossless_resnet14", "jpeg": "cifar10first4000_jpeg_resnet14"}
IMAGE_DEPENDENCE_FILE = "cifar10n_image_dependence.json"
_PROBE_EXPERIMENT = "cifar10n_resnet14"  # the probes' network and data (clean labels)


def _subset_experiment(version: str) -> Experiment:
    return replace(
        get_experiment("cifar10jpg_resnet14"), key=JPEG_PENALTY_KEYS[version], dataset=f"cifar10first4000_{version}",
        description=f"the first 4,000 CIFAR-10 training images ({version}), ResNet-14", paper_block=None,
        paper_note="", figure=False, settings=(("none", 0.0),),
        recipe="library",  # the penalty was measured with the library's recipe
    )


def jpeg_penalty(data_root: str | Path | None = None, *, runs: int = 3, profile: str = "paper",
                 epochs: int | None = None, lr: float | None = None, device: str | torch.device = "auto",
                 results_dir: str | Path = "results", progress: bool = True) -> pd.DataFrame:
    """Train ``runs`` clean cross-entropy ResNet-14 runs on each version of the
    4,000-image subset (2,700 training, 300 validation and 1,000 test images;
    the CIFAR schedule of ``profile``; runs already stored are kept) and return every stored row of both (``version`` column added; the
    profile label of these runs in ``.attrs["profile"]``, e.g. ``paper:lr=0.01``)."""
    splits = data_module.jpeg_penalty_splits(data_root, progress=progress)
    cells = [Cell("cross_entropy", "none", 0.0, k) for k in range(runs)]
    for version, split in splits.items():
        run_cells(_subset_experiment(version), cells, profile=profile, epochs=epochs, lr=lr, device=device,
                  results_dir=results_dir, split=split, progress=progress)
    rows = jpeg_penalty_rows(results_dir)
    rows.attrs["profile"] = _resolve_profile(_subset_experiment("jpeg"), profile, epochs, None, True, lr)[2]
    return rows


def jpeg_penalty_rows(results_dir: str | Path = "results") -> pd.DataFrame:
    """The stored rows of both versions, with a ``version`` column."""
    store = ResultStore(results_dir)
    parts = [store.load(key).assign(version=version) for version, key in JPEG_PENALTY_KEYS.items()]
    return pd.concat(parts, ignore_index=True)


def jpeg_penalty_summary(rows: pd.DataFrame, profile: str = "paper") -> pd.DataFrame:
    """Per version: runs, mean and std (ddof 0) of the test accuracy of the runs
    stored under ``profile``, and in ``.attrs`` the gap lossless − JPEG of the
    means with its standard error (``gap``, ``gap_se``: the square root of the
    sum of each version's sample variance over its runs) when both have runs;
    ``gap_se`` is NaN with a single run of a version."""
    rows = rows[rows["profile"] == profile]
    accuracy = rows.groupby("version")["test_accuracy"]
    table = accuracy.agg(runs="count", mean="mean", std=lambda a: a.std(ddof=0))
    table = table.reindex(list(JPEG_PENALTY_KEYS))
    if table["runs"].fillna(0).min() > 0:
        gap = table.loc["lossless", "mean"] - table.loc["jpeg", "mean"]
        variances = accuracy.var(ddof=1)  # unbiased: the usual standard error
        spread = np.sqrt(sum(variances[v] / table.loc[v, "runs"] for v in JPEG_PENALTY_KEYS))
        table.attrs.update(gap=float(gap), gap_se=float(spread))
    return table


def _probe_schedule(epochs: int) -> Schedule:
    """A short SGD schedule for the probe networks: momentum 0.9, kernel decay
    10⁻⁴, learning rate 0.05 divided by 10 for the last epoch."""
    return Schedule("sgd", 0.05, epochs, momentum=0.9, weight_decay=1e-4,
                    milestones=(epochs - 1,) if epochs > 1 else ())


def _out_of_fold_probabilities(split: data_module.Split, folds: int, epochs: int, seed: int,
                               runtime: Runtime, progress: bool) -> tuple[np.ndarray, list[float]]:
    """Softmax ``(n_train, c)`` of each training image from a ResNet-14 trained on
    the clean labels of the other folds (5 % of them held out to pick the epoch),
    and each fold's accuracy on its own images."""
    experiment = get_experiment(_PROBE_EXPERIMENT)
    n = len(split.y_train)
    fold_of = np.random.default_rng(seed).permutation(n) % folds
    x, y, device = split.x_train, split.y_train, runtime.device
    probs, accuracies = np.zeros((n, split.num_classes)), []
    for fold in range(folds):
        held = np.flatnonzero(fold_of == fold)
        rest = np.random.default_rng(seed + 1 + fold).permutation(np.flatnonzero(fold_of != fold))
        n_val = max(1, len(rest) // 20)
        val, train = rest[:n_val], rest[n_val:]
        group_data = GroupData(
            x[train].to(device), x[val].to(device), x[held].to(device), y[held].to(device), split.num_classes,
            pixel_mean=data_module.pixel_mean(x[train]).to(device), augment=True,
        )
        cell = Cell("cross_entropy", "none", 0.0, seed + fold)
        stack = build_runs(experiment, "cross_entropy", [cell], split, runtime)
        outcome = train_group(stack, "cross_entropy", group_data, y[train][None].to(device), y[val][None].to(device),
                              None, _probe_schedule(epochs), [order_seed(cell.seed)], progress=progress,
                              desc=f"probe network, fold {fold + 1}/{folds}")[0]
        accuracies.append(outcome.test_accuracy)
        softmax = _evaluate(stack, group_data, group_data.x_test, lambda z, s: z[0].float().softmax(-1))
        probs[held] = torch.cat(softmax).double().cpu().numpy()
    return probs, accuracies


def cifar10n_image_dependence(data_root: str | Path | None = None, *, folds: int = 2, epochs: int = 3,
                              permutations: int = 1000, seed: int = 0, device: str | torch.device = "auto",
                              results_dir: str | Path = "results", progress: bool = True) -> dict:
    """Cross-fit probe networks on the CIFAR-10N training images (clean labels),
    test every human label set with :func:`~losscorrection.noise.image_dependence`
    and write the result to ``<results_dir>/cifar10n_image_dependence.json``.

    Returns that record: per label set the statistic, its null mean and std,
    z, p-value and number of mislabelled images; the probes' accuracies on the
    images they never saw; and the provenance."""
    runtime = Runtime.resolve(get_experiment(_PROBE_EXPERIMENT).model, device)
    split = data_module.load_dataset("cifar10n", data_root, progress=progress)
    started = time.perf_counter()
    probs, accuracies = _out_of_fold_probabilities(split, folds, epochs, seed, runtime, progress)
    tests = {}
    for name, (human, _) in split.label_sets.items():
        result = image_dependence(probs, split.y_train, human, permutations, seed)
        tests[name] = {key: None if isinstance(value, float) and not np.isfinite(value) else value
                       for key, value in {**asdict(result), "z": result.z}.items()}  # JSON has no NaN
    record = dict(
        label_sets=tests, probe_accuracy=accuracies, folds=folds, epochs=epochs, train_size=len(split.y_train),
        seconds=round(time.perf_counter() - started, 1), device=runtime.describe(), precision=runtime.precision,
        torch_version=torch.__version__, git_commit=git_commit(), timestamp=timestamp(),
    )
    atomic_write_text(Path(results_dir) / IMAGE_DEPENDENCE_FILE, json.dumps(record, indent=1) + "\n")
    return record
