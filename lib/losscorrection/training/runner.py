"""Running cells: :func:`run_cells` trains every requested cell that the results
store does not hold yet, Algorithm 1 in full (stage-1 cross-entropy runs, T̂
estimated from them, then the corrections), in groups of runs of one method,
resuming unfinished groups from their checkpoints and appending each finished
group's rows with their provenance. :func:`ensure_results` is what the book
calls: the stored runs of some cells, trained when missing and feasible, or a
note saying why not.
"""

from __future__ import annotations

import hashlib
import math
import tempfile
import time
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .. import data as data_module
from .. import models
from ..estimation import estimate_transition, estimation_error
from ..methods import STAGE_ONE, method_spec
from ..store import CELL_KEY, ResultStore, cell_key, git_commit, timestamp
from .budget import describe_duration, estimate_seconds
from .executors import LocalExecutor, RayExecutor, make_executor
from .experiments import (
    RECIPES, Cell, Experiment, Recipe, Schedule, augment_seed, dropout_seed, get_experiment,
    get_recipe, noisy_labels, order_seed, profile_label, profile_settings, stacked_labels,
)
from .loop import GroupData, train_group
from .objective import correction_matrices, identity_mix_for
from .runs import GroupedRuns, ModuleRuns, RunStack, StackedMLP
from .runtime import Runtime, auto_bf16
from .sweep import GroupBusy, GroupJob, GroupResult, SweepContext, SweepStore, describe_group

__all__ = [
    "CHECKPOINT_FOLDER", "GroupBusy", "build_runs", "ensure_results", "make_group_data", "run_cells", "train_job",
]

CHECKPOINT_FOLDER = "checkpoints"  # under the results folder: unfinished groups, tracked by git


def build_runs(experiment: Experiment, method: str, cells: list[Cell], split: data_module.Split,
               runtime: Runtime) -> RunStack:
    """The networks of one group of runs, batched in the fastest way the model
    allows (see :mod:`losscorrection.training.runs`), ready for :func:`train_group`.

    Parameters
    ----------
    experiment
        Names the network (``experiment.model`` and its ``model_kwargs``).
    method
        The method the runs train with: its batch-normalised output layer, if any.
    cells
        One per run: run ``k`` is initialised with ``torch.manual_seed(cell.seed)``
        and draws its dropout masks from its own seed.
    split
        Gives the number of classes and the input size.
    runtime
        Where the runs train, in what precision and memory layout.
    """
    modules = []
    for cell in cells:
        torch.manual_seed(cell.seed)
        modules.append(
            models.build_model(
                experiment.model, split.num_classes, input_dim=split.x_train[0].numel(),
                bn_head=method_spec(method).bn_head, **experiment.model_kwargs,
            )
        )
    if isinstance(modules[0], models.MLP):
        return StackedMLP(modules, [dropout_seed(c.seed) for c in cells], runtime)
    if runtime.device.type == "cuda" and isinstance(modules[0], models.PreActResNet):
        return GroupedRuns(modules, runtime)
    return ModuleRuns(modules, runtime, dropout_seeds=[dropout_seed(c.seed) for c in cells])


def make_group_data(experiment: Experiment, split: data_module.Split, device: torch.device,
                    recipe: Recipe = RECIPES["library"]) -> GroupData:
    """The split's inputs and clean test labels on ``device``, with the pixel mean
    and scale and the augmentation of the experiment and ``recipe``: what
    every group of runs on ``split`` shares (:func:`train_group`'s ``group_data``)."""
    images = split.x_train.dtype == torch.uint8
    mean = recipe.pixel_mean(split.x_train, split.x_val).to(device) if images else None
    return GroupData(
        split.x_train.to(device), split.x_val.to(device), split.x_test.to(device),
        split.y_test.to(device), split.num_classes, pixel_mean=mean,
        augment=experiment.augment, augmentation=recipe.augmentation, pixel_scale=recipe.pixel_scale,
    )


def run_cells(
    experiment: Experiment | str,
    cells: Iterable[Cell],
    *,
    profile: str = "paper",
    data_root: str | Path | None = None,
    device: str | torch.device = "auto",
    results_dir: str | Path = "results",
    epochs: int | None = None,
    limit: int | None = None,
    lr: float | None = None,
    weight_decay_scope: str | None = None,
    model_options: dict | None = None,
    max_runs_per_group: int = 32,
    precision: str = "auto",
    progress: bool = True,
    split: data_module.Split | None = None,
    time_limit: float | None = None,
    recipe: str | None = None,
    executor: str | LocalExecutor | RayExecutor = "local",
    checkpoint_seconds: float | None = None,
) -> pd.DataFrame:
    """Train every cell not yet in the results store (Algorithm 1) and append one row per run.

    Parameters
    ----------
    experiment
        A key of :data:`~losscorrection.training.EXPERIMENTS` or your own
        :class:`~losscorrection.training.Experiment`.
    cells
        The (method, noise, rate, run) cells to have results for.
    profile
        ``smoke``, ``quick`` or ``paper``: epochs, runs and data size.
    data_root
        Where the data sets are (see :func:`losscorrection.data.resolve_data_root`).
    device
        ``auto``, ``cpu`` or ``cuda``.
    results_dir
        The results store's folder.
    epochs, limit, lr, weight_decay_scope
        Override the profile's epochs, examples kept per split, learning
        rate and weight-decay scope (``kernels`` or ``all``, see
        :class:`~losscorrection.training.Schedule`); the rows are then stored
        under a profile label that says so (e.g. ``paper:lr=0.01``).
    model_options
        Keyword arguments for the network that override the experiment's
        (e.g. ``{"output_init": "uniform"}``); stored under a profile label
        that names them (``paper:output_init=uniform``).
    max_runs_per_group
        How many runs of one method train together as one batched model.
    precision
        ``fp32``, ``bf16`` (autocast of the forward pass) or
        ``auto`` (:func:`auto_bf16`: bf16 for the convolutional and recurrent
        models on CUDA, and for every model but the embedding one on CPUs with
        native bf16 arithmetic).
    progress
        Show tqdm bars.
    split
        Your own data (e.g. from :func:`losscorrection.data.split_arrays`),
        instead of loading ``experiment.dataset`` (and ``limit``). Labels that
        are already noisy go with the setting ``("none", 0.0)``: no noise is
        added, the T̂ methods estimate it, and ``T_error`` is then measured
        against the identity.
    time_limit
        Seconds from the call on: an epoch that would end later is not
        started; the unfinished group is checkpointed and
        :class:`~losscorrection.training.TimeLimitReached` raised, with every
        finished group stored. The same call continues.
    recipe
        A name of :data:`~losscorrection.training.experiments.RECIPES`
        (default: the experiment's own, ``experiment.recipe``):
        ``"released"`` trains an image experiment as the authors' released
        code does (:class:`~losscorrection.training.Recipe`; the CIFAR
        experiments' own), ``"library"`` as this library does. Rows of a
        recipe other than the experiment's are stored under
        ``<profile>:recipe=<name>``.
    executor
        Where the groups of runs train: ``"local"`` (this process, one group
        after the other), ``"ray"`` or a
        :class:`~losscorrection.training.executors.RayExecutor` (one Ray task
        per group on a Ray cluster; the results are stored by this process
        only, and ``results_dir`` must be on a filesystem every node reaches).
    checkpoint_seconds
        How often an unfinished group saves its state (default
        :data:`~losscorrection.training.CHECKPOINT_SECONDS`).

    Returns
    -------
    pandas.DataFrame
        The new rows (:data:`losscorrection.store.COLUMNS`); ``attrs["resumed"]``
        maps each group that continued from its checkpoint to the epoch it
        continued from.

    Cells already stored (same method, noise, rate, run and profile) are
    skipped, so an interrupted sweep resumes where it stopped; each finished
    group of runs is written before the next one starts, and an unfinished
    group resumes from its checkpoint under ``<results_dir>/checkpoints/`` (small
    enough to commit, so that a clone of the repository continues it).
    """
    deadline = None if time_limit is None else time.perf_counter() + time_limit
    experiment = get_experiment(experiment) if isinstance(experiment, str) else experiment
    schedule, limit, label = _resolve_profile(experiment, profile, epochs, limit, own_data=split is not None, lr=lr,
                                              weight_decay_scope=weight_decay_scope)
    recipe = experiment.recipe if recipe is None else recipe
    recipe_spec = get_recipe(recipe, experiment)
    if recipe != experiment.recipe:
        label = f"{label}:recipe={recipe}"
    experiment = replace(experiment, recipe=recipe,
                         model_kwargs={**experiment.model_kwargs, **dict(recipe_spec.model_options)})
    changed = {k: v for k, v in (model_options or {}).items() if experiment.model_kwargs.get(k, object()) != v}
    if changed:
        experiment = replace(experiment, model_kwargs={**experiment.model_kwargs, **changed})
        label = ":".join([label, *(f"{k}={v}" for k, v in sorted(changed.items()))])
    store = ResultStore(results_dir)
    done = store.done_cells(experiment.key)
    pending, estimated, stage_one = _plan(experiment, cells, label, store, done)
    if not pending:
        return pd.DataFrame()
    with make_executor(executor) as trainer:
        runtime = trainer.runtime(experiment.model, device, precision)
        if split is None:
            split = data_module.load_dataset(experiment.dataset, data_root, limit=limit, **experiment.dataset_kwargs)
        jobs = _group_jobs(experiment, stage_one, pending, label, schedule, split, runtime, max_runs_per_group,
                           Path(results_dir).absolute() if trainer.remote else results_dir)
        context = SweepContext(
            experiment, split, {key: noisy_labels(experiment, split, *key) for key in {c.noise_key for c in pending}},
            schedule, runtime, recipe=recipe_spec, progress=progress, deadline=deadline,
            checkpoint_seconds=checkpoint_seconds, provenance=dict(
                experiment=experiment.key, model=experiment.model, profile=label, epochs=schedule.epochs,
                train_size=len(split.y_train), precision=runtime.precision, torch_version=torch.__version__,
                git_commit=git_commit()),
            group_data=None if trainer.remote else make_group_data(experiment, split, runtime.device, recipe_spec),
        )
        with SweepStore(store, experiment.key, label, estimated) as sweep:
            trainer.run(jobs, sweep, train_job, context)
    frame = pd.DataFrame(sweep.rows)
    frame.attrs["resumed"] = sweep.resumed
    return frame


def _group_jobs(experiment: Experiment, stage_one: list[Cell], pending: list[Cell], label: str, schedule: Schedule,
                split: data_module.Split, runtime: Runtime, max_runs_per_group: int,
                results_dir: str | Path) -> list[GroupJob]:
    """The groups of Algorithm 1, in the order a single process trains them: the
    stage-1 cross-entropy runs first (their T̂ feed the T̂ methods), then the
    other methods, each in groups of at most ``max_runs_per_group`` runs."""
    by_method = {STAGE_ONE: stage_one}
    for cell in pending:
        if cell.method != STAGE_ONE:
            by_method.setdefault(cell.method, []).append(cell)
    labels_digest = hashlib.sha1(
        b"".join(y.numpy().tobytes() for y in (split.y_train, split.y_val, split.y_test))).hexdigest()
    jobs = []
    for method, method_cells in by_method.items():
        for start in range(0, len(method_cells), max_runs_per_group):
            group = method_cells[start : start + max_runs_per_group]
            checkpoint = _checkpoint_path(results_dir, experiment, method, group, label, schedule,
                                          (split.sizes, labels_digest), runtime)
            needs = tuple(dict.fromkeys(c.noise_key for c in group)) if method_spec(method).estimated_T else ()
            description = describe_group(experiment.key, method, group)
            jobs.append(GroupJob(method, tuple(group), checkpoint, needs, description))
    return jobs


def train_job(context: SweepContext, job: GroupJob, estimated: dict[tuple, np.ndarray]) -> GroupResult:
    """Train one group of runs of one method in this process, resuming from its
    checkpoint, and return its result rows and new T̂s (stage 1).

    Writes nothing but the group's checkpoint, so it runs wherever an executor
    sends it; the caller stores the rows and T̂ it returns.

    Parameters
    ----------
    context
        What the sweep's groups share; its inputs are put on the device here
        unless ``context.group_data`` holds them already.
    job
        The group.
    estimated
        The stage-1 T̂ of each (noise, rate, run) in ``job.needs``.
    """
    experiment, method, group, runtime = context.experiment, job.method, list(job.cells), context.runtime
    group_data = context.group_data
    if group_data is None:
        group_data = make_group_data(experiment, context.split, runtime.device, context.recipe)
    labels = context.labels
    uses_estimate = method_spec(method).estimated_T
    transitions = [estimated[c.noise_key] if uses_estimate else labels[c.noise_key].T for c in group]
    matrices = correction_matrices(method, transitions, runtime.device)
    stack = build_runs(experiment, method, group, context.split, runtime)
    y_train, y_val = stacked_labels([labels[c.noise_key] for c in group], runtime.device)
    epochs_trained = []
    outcomes = train_group(
        stack, method, group_data, y_train, y_val, matrices, context.schedule,
        order_seeds=[order_seed(c.seed) for c in group], augment_seeds=[augment_seed(c.seed) for c in group],
        want_probs=method == STAGE_ONE, progress=context.progress,
        desc=f"{experiment.key} {method} ({len(group)} run{'s' if len(group) > 1 else ''})",
        checkpoint=job.checkpoint, deadline=context.deadline, recipe=context.recipe,
        checkpoint_seconds=context.checkpoint_seconds, on_epoch=lambda epoch, _: epochs_trained.append(epoch),
    )
    wall = outcomes[0].group_seconds / len(group)  # per run; a resumed group counts every process's share
    provenance = dict(context.provenance, device=runtime.describe())
    new_transitions = {}
    rows = []
    for cell, T, outcome in zip(group, transitions, outcomes):
        T_error = identity_mix = math.nan
        if method_spec(method).correction == "backward":
            identity_mix = identity_mix_for(T)
        if method == STAGE_ONE:
            new_transitions[cell.noise_key] = estimate_transition(outcome.probs, experiment.quantile)
        if uses_estimate:
            T_error = estimation_error(estimated[cell.noise_key], labels[cell.noise_key].T)
        rows.append(dict(
            provenance, method=method, noise=cell.noise, rate=cell.rate, run=cell.run, seed=cell.seed,
            test_accuracy=round(outcome.test_accuracy, 4), selected_epoch=outcome.selected_epoch,
            val_loss=round(outcome.val_loss, 6), val_accuracy=round(outcome.val_accuracy, 4),
            T_error=T_error, identity_mix=identity_mix, wall_seconds=round(wall, 3), timestamp=timestamp(),
        ))
    resumed = epochs_trained[0] - 1 if epochs_trained else context.schedule.epochs
    return GroupResult(rows, new_transitions, resumed)


def _plan(experiment: Experiment, cells: Iterable[Cell], label: str, store: ResultStore,
          done: set[tuple]) -> tuple[list[Cell], dict[tuple, np.ndarray], list[Cell]]:
    """What Algorithm 1 still has to train for ``cells`` under the profile ``label``:
    the cells not in the store (``done``), the stored T̂ of their (noise, rate,
    run), and the stage-1 cross-entropy runs: those asked for and those a T̂
    method needs whose T̂ is not stored."""
    pending = [c for c in dict.fromkeys(cells) if cell_key(c.method, *c.noise_key, label) not in done]
    needs_estimate = {c.noise_key for c in pending if method_spec(c.method).estimated_T}
    estimated = {key: T_hat for key in needs_estimate
                 if (T_hat := store.get_transition(experiment.key, *key, label)) is not None}
    stage_one = [c for c in pending if c.method == STAGE_ONE] + [
        Cell(STAGE_ONE, *key) for key in needs_estimate if key not in estimated]
    return pending, estimated, list(dict.fromkeys(stage_one))


def _resolve_profile(experiment: Experiment, profile: str, epochs: int | None, limit: int | None,
                     own_data: bool, lr: float | None = None,
                     weight_decay_scope: str | None = None) -> tuple[Schedule, int | None, str]:
    """The schedule and data limit a run uses (the profile's, with ``epochs``,
    ``limit``, ``lr`` and ``weight_decay_scope`` overriding them), and the profile label its rows are
    stored under (:func:`~losscorrection.training.experiments.profile_label`).
    A given split (``own_data``) is used whole."""
    settings = profile_settings(experiment, profile)
    schedule = replace(settings.schedule, epochs=epochs) if epochs else settings.schedule
    schedule = replace(schedule, lr=lr) if lr is not None else schedule
    if weight_decay_scope is not None:
        if weight_decay_scope != schedule.weight_decay_scope and not schedule.weight_decay:
            raise ValueError(f"weight decay scope {weight_decay_scope!r} would change nothing: "
                             f"{experiment.key} trains without weight decay")
        schedule = replace(schedule, weight_decay_scope=weight_decay_scope)
    limit = settings.limit if own_data else limit or settings.limit
    return schedule, None if own_data else limit, profile_label(profile, settings, schedule, limit)


def _checkpoint_path(results_dir: str | Path, experiment: Experiment, method: str, group: list[Cell], profile: str,
                     schedule: Schedule, data_identity: tuple, runtime: Runtime) -> Path:
    """Where a group's unfinished training is kept (``<results>/checkpoints/``, which
    git tracks: a committed checkpoint lets a fresh clone continue the group):
    named by everything that determines the group's training, the data
    (``data_identity``: its sizes and a digest of its labels) and the device
    type and precision included, and by nothing of the machine or the folder."""
    what = repr((experiment.key, method, profile, schedule, data_identity, runtime.device.type, runtime.bf16,
                 [(c.method, *c.noise_key) for c in group]))
    digest = hashlib.sha1(what.encode()).hexdigest()[:16]
    return Path(results_dir) / CHECKPOINT_FOLDER / f"{experiment.key}-{method}-{digest}.pt"


def ensure_results(
    experiment: Experiment | str,
    cells: Iterable[Cell],
    *,
    profile: str,
    reuse_results: bool = True,
    train_missing: bool = True,
    data_root: str | Path | None = None,
    device: str | torch.device = "auto",
    results_dir: str | Path = "results",
    epochs: int | None = None,
    limit: int | None = None,
    progress: bool = True,
    budget_seconds: float | None = None,
) -> tuple[pd.DataFrame, str | None]:
    """The stored runs of ``cells`` under ``profile``, training missing ones if asked.

    Parameters
    ----------
    experiment, cells, profile
        As for :func:`run_cells`.
    reuse_results
        False retrains every cell into a fresh temporary store, so committed
        results are never overwritten.
    train_missing
        Train the cells the store lacks (when their data is present).
    data_root, device, results_dir, epochs, limit, progress
        As for :func:`run_cells`.
    budget_seconds
        Train only when the missing runs are estimated to take at most this long
        (:func:`~losscorrection.training.budget.estimate_seconds`); otherwise the
        note gives the estimate and the command that trains them. None: no limit.

    Returns
    -------
    (rows, note)
        The stored rows of ``cells``, and None when every cell has a result,
        else a note saying why not, e.g. ``"not run here: needs mnist data
        (...)"`` when the data is absent.
    """
    experiment = get_experiment(experiment) if isinstance(experiment, str) else experiment
    cells = list(dict.fromkeys(cells))
    store_dir = results_dir if reuse_results else tempfile.mkdtemp(prefix=f"{experiment.key}-")
    absent = data_module.missing_files(experiment.dataset, data_root) if experiment.dataset in data_module.DATASETS else []
    note = None
    if train_missing and not absent:
        if budget_seconds is not None:
            note = _over_budget_note(experiment, cells, profile, epochs, limit, device, store_dir, budget_seconds)
        if note is None:
            try:
                run_cells(experiment, cells, profile=profile, data_root=data_root, device=device,
                          results_dir=store_dir, epochs=epochs, limit=limit, progress=progress)
            except data_module.MissingDataError as err:
                note = _needs_data_note(experiment, err.missing or [str(err)])
    frame = ResultStore(store_dir).load(experiment.key)
    label = _resolve_profile(experiment, profile, epochs, limit, own_data=False)[2]
    wanted = {cell_key(c.method, *c.noise_key, label) for c in cells}
    keys = [cell_key(*row) for row in frame[list(CELL_KEY)].itertuples(index=False)]
    frame = frame.loc[np.array([k in wanted for k in keys], dtype=bool)].reset_index(drop=True)
    missing = len(wanted) - len(set(keys) & wanted)
    if not missing:
        return frame, None
    if note is None:  # not trained here: say what is missing and what it would cost
        note = (_needs_data_note(experiment, absent) if absent else
                _over_budget_note(experiment, cells, profile, epochs, limit, device, store_dir, 0.0)
                or f"{missing} of {len(wanted)} runs ({label} profile) not run yet")
    return frame, note


def _over_budget_note(experiment: Experiment, cells: list[Cell], profile: str, epochs: int | None,
                      limit: int | None, device: str | torch.device, results_dir: str | Path,
                      budget_seconds: float) -> str | None:
    """None when the runs of ``cells`` missing from the store fit in the budget
    (their stage-1 runs included), else the note that says what they would cost."""
    schedule, limit, label = _resolve_profile(experiment, profile, epochs, limit, own_data=False)
    store = ResultStore(results_dir)
    pending, _, stage_one = _plan(experiment, cells, label, store, store.done_cells(experiment.key))
    runs = len(set(pending) | set(stage_one))
    if not runs:
        return None
    size = min(data_module.nominal_train_size(experiment.dataset), limit or math.inf)
    here = Runtime.resolve(experiment.model, device)
    stored = store.load_all()  # other experiments' runs calibrate the estimate too
    cost = estimate_seconds(experiment, runs, schedule, size, here.device.type, stored, bf16=here.bf16)
    if cost <= budget_seconds:
        return None
    on_cpu = here.device.type == "cpu"
    gpu = estimate_seconds(experiment, runs, schedule, size, "cuda", stored,
                           bf16=auto_bf16(experiment.model, torch.device("cuda")))
    on_gpu = f", {describe_duration(gpu)} on one H100-class GPU" if on_cpu and math.isfinite(gpu) else ""
    figure = " --with-figure" if experiment.figure else ""
    where = "on this CPU" if on_cpu else "on this GPU"
    return (f"not run here: {runs} runs, {describe_duration(cost)} {where}{on_gpu}: "
            f"`losscorrection sweep {experiment.key}{figure} --profile {profile}`")


def _needs_data_note(experiment: Experiment, missing: list[str]) -> str:
    """The note shown instead of results whose data is absent."""
    files = ", ".join(Path(m).name for m in missing)
    return f"not run here: needs {experiment.dataset} data ({files}; see the README's Data section)"
