"""Algorithm 1 (robust two-stage training) of the paper, many runs at a time.

A *cell* of the paper is (experiment, method, noise, rate, run). Runs of one
method are trained together as one batched model, and every run keeps its own
initialisation, data order, dropout masks, noisy labels, loss and T, all
derived from its seed. The cross-entropy runs are stage 1: T̂ is estimated
(Eq. 12-13) from each stage-1 model's softmax on the training and validation
inputs and reused by the T̂ methods of the same (noise, rate, run). Model
selection keeps the epoch with the lowest loss (the run's own, corrected loss)
on the noisy validation split; we report clean test accuracy.

Modules, from the bottom up:

- :mod:`~losscorrection.training.experiments`: the registry of experiments,
  profiles, cells, seeds, true T and noisy labels;
- :mod:`~losscorrection.training.runtime`: the device, precision and memory
  layout of the runs, decided once per call;
- :mod:`~losscorrection.training.runs`: K networks as one batched model;
- :mod:`~losscorrection.training.objective`: the per-run losses of every method;
- :mod:`~losscorrection.training.checkpoint`: saving and resuming a group;
- :mod:`~losscorrection.training.loop`: :func:`train_group`, one stage for K runs;
- :mod:`~losscorrection.training.sweep`: a sweep's plan (one job per group of
  runs) and its store, written by the calling process alone;
- :mod:`~losscorrection.training.executors`: where the groups train, in this
  process (:class:`LocalExecutor`) or as tasks on a Ray cluster
  (:class:`RayExecutor`);
- :mod:`~losscorrection.training.runner`: :func:`run_cells` and
  :func:`ensure_results`, Algorithm 1 over the cells with the results store;
- :mod:`~losscorrection.training.studies`: beyond the paper, the JPEG penalty
  on 4,000 lossless CIFAR-10 images and the image dependence of CIFAR-10N's
  human labels;
- :mod:`~losscorrection.training.fit`: :func:`fit`, the plain loop for one
  network of your own (and Clothing1M's ResNet-50).
"""

from ..methods import BN_HEAD_METHODS, STAGE_ONE
from .checkpoint import CHECKPOINT_SECONDS
from .experiments import (
    ADAGRAD, CIFAR10_SGD, CIFAR10N_SETTINGS, CIFAR100_SGD, EXPERIMENTS, FIGURE_METHODS, FIGURE_RATES,
    IMDB_SETTINGS,
    MNIST_SETTINGS, PROFILES, RECIPES, Cell, Experiment, NoisyLabels, ProfileSettings, Recipe, Schedule,
    augment_seed, dropout_seed, figure_cells, get_experiment, get_recipe, noisy_labels, order_seed, profile_label,
    profile_settings, stacked_labels, table_cells, transition_for,
)
from .executors import EXECUTORS, LocalExecutor, RayExecutor
from .fit import fit
from .loop import (
    EVAL_BATCH, GroupData, RunOutcome, TimeLimitReached, kernel_penalty, train_group, weight_decay_groups,
)
from .objective import (
    IDENTITY_MIXES, correction_matrices, identity_mix_for, invertible_backward_matrix, per_run_losses,
)
from .runner import CHECKPOINT_FOLDER, GroupBusy, build_runs, ensure_results, make_group_data, run_cells
from .runtime import PRECISIONS, Runtime, auto_bf16, resolve_device
from .studies import (
    IMAGE_DEPENDENCE_FILE, JPEG_PENALTY_KEYS, cifar10n_image_dependence, jpeg_penalty, jpeg_penalty_rows,
    jpeg_penalty_summary,
)
from .runs import GroupedLinear, GroupedRuns, ModuleRuns, RunStack, StackedMLP, group_modules

__all__ = [
    "ADAGRAD",
    "IMAGE_DEPENDENCE_FILE",
    "JPEG_PENALTY_KEYS",
    "CIFAR10N_SETTINGS",
    "BN_HEAD_METHODS",
    "CHECKPOINT_FOLDER",
    "CHECKPOINT_SECONDS",
    "CIFAR10_SGD",
    "CIFAR100_SGD",
    "EVAL_BATCH",
    "EXECUTORS",
    "EXPERIMENTS",
    "FIGURE_METHODS",
    "FIGURE_RATES",
    "IDENTITY_MIXES",
    "IMDB_SETTINGS",
    "MNIST_SETTINGS",
    "PRECISIONS",
    "PROFILES",
    "RECIPES",
    "STAGE_ONE",
    "Cell",
    "Experiment",
    "GroupBusy",
    "GroupData",
    "GroupedLinear",
    "GroupedRuns",
    "LocalExecutor",
    "ModuleRuns",
    "NoisyLabels",
    "ProfileSettings",
    "RayExecutor",
    "Recipe",
    "RunOutcome",
    "RunStack",
    "Runtime",
    "Schedule",
    "StackedMLP",
    "TimeLimitReached",
    "augment_seed",
    "cifar10n_image_dependence",
    "auto_bf16",
    "build_runs",
    "correction_matrices",
    "dropout_seed",
    "ensure_results",
    "figure_cells",
    "fit",
    "get_experiment",
    "get_recipe",
    "jpeg_penalty",
    "jpeg_penalty_rows",
    "jpeg_penalty_summary",
    "kernel_penalty",
    "make_group_data",
    "group_modules",
    "identity_mix_for",
    "invertible_backward_matrix",
    "noisy_labels",
    "order_seed",
    "per_run_losses",
    "profile_label",
    "profile_settings",
    "resolve_device",
    "run_cells",
    "stacked_labels",
    "table_cells",
    "train_group",
    "transition_for",
    "weight_decay_groups",
]
