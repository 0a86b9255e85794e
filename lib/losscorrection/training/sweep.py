"""A sweep's plan and its store.

:func:`~losscorrection.training.run_cells` splits a sweep into three parts:

- planning: the :class:`GroupJob`\\ s, one group of runs of one method each,
  with the (noise, rate, run) settings whose stage-1 T̂ it trains with;
- training one group: a pure function of a :class:`SweepContext` (what every
  group shares: data, noisy labels, schedule, device), the job and the T̂ it
  needs, which returns a :class:`GroupResult` (rows and new T̂) and writes
  nothing but the group's checkpoint;
- storing: :class:`SweepStore`, in the calling process only, holds each
  group's lock, appends its rows to the results store and its T̂ to
  ``<experiment>.transitions.json``, and removes its checkpoint.

Where the training happens is an executor's business
(:mod:`~losscorrection.training.executors`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import data as data_module
from ..atomic import LockHeld, locked
from ..methods import STAGE_ONE
from ..store import ResultStore, cell_key
from .experiments import RECIPES, Cell, Experiment, NoisyLabels, Recipe, Schedule
from .loop import GroupData
from .runtime import Runtime

__all__ = ["GroupBusy", "GroupJob", "GroupResult", "SweepContext", "SweepStore", "TrainGroup", "describe_group"]


class GroupBusy(RuntimeError):
    """Another process is training the same group of runs (same cells, profile,
    data, device and precision) into the same results folder."""


def describe_group(experiment: str, method: str, cells: list[Cell] | tuple[Cell, ...]) -> str:
    """A group in words: ``digits_fc forward_That (asymmetric 0.2, none)``."""
    settings = ", ".join(sorted({f"{c.noise} {c.rate:g}" if c.rate else c.noise for c in cells}))
    return f"{experiment} {method} ({settings})"


@dataclass(frozen=True)
class GroupJob:
    """One group of runs of one method: what one task trains.

    Attributes
    ----------
    method
        The method every run of the group trains with.
    cells
        The group's runs, in the order of its batched model.
    checkpoint
        The group's training state; only the process training the group writes
        it, and its lock is ``<checkpoint>.lock``.
    needs
        The (noise, rate, run) settings whose stage-1 T̂ the group trains with
        (its cells' settings for a T̂ method, else none).
    description
        The group in words (:func:`describe_group`).
    """

    method: str
    cells: tuple[Cell, ...]
    checkpoint: Path
    needs: tuple[tuple[str, float, int], ...] = ()
    description: str = ""


@dataclass
class GroupResult:
    """What training one group returns: one result row per run, the T̂ of each
    (noise, rate, run) of a stage-1 group (empty otherwise), and the epochs
    restored from the group's checkpoint (0: trained from its first epoch)."""

    rows: list[dict]
    transitions: dict[tuple, np.ndarray]
    resumed_epoch: int


@dataclass(frozen=True)
class SweepContext:
    """What every group of a sweep shares (a Ray executor sends it to the cluster once).

    Attributes
    ----------
    experiment, split, labels, schedule, runtime, recipe
        The experiment, its data, the noisy labels of every (noise, rate, run),
        the training schedule, where and in what precision the runs train, and
        the training recipe.
    provenance
        The result rows' columns common to the sweep; ``device`` is added by
        the process that trains, which describes its own device.
    progress
        Show a bar over each group's epochs.
    deadline
        A ``time.perf_counter()`` value of the process that trains: an epoch
        that would end later is not started (see
        :func:`~losscorrection.training.train_group`).
    checkpoint_seconds
        How often an unfinished group saves its state (None:
        :data:`~losscorrection.training.CHECKPOINT_SECONDS`).
    group_data
        The inputs already on the device, when the groups train in this process
        (None: the process that trains puts them there).
    """

    experiment: Experiment
    split: data_module.Split
    labels: dict[tuple, NoisyLabels]
    schedule: Schedule
    runtime: Runtime
    provenance: dict
    recipe: Recipe = field(default_factory=lambda: RECIPES["library"])
    progress: bool = True
    deadline: float | None = None
    checkpoint_seconds: float | None = None
    group_data: GroupData | None = None


TrainGroup = Callable[[SweepContext, GroupJob, dict], GroupResult]  # (context, job, T̂ by setting) -> result


@contextlib.contextmanager
def group_lock(job: GroupJob) -> Iterator[None]:
    """Hold the group's lock (``<checkpoint>.lock``) while it trains and its rows
    are stored, so that two processes never train the same runs at once."""
    held = contextlib.ExitStack()
    try:
        held.enter_context(locked(job.checkpoint, wait=False))
    except LockHeld:
        raise GroupBusy(f"another process is training {job.description} into this results folder; "
                        "run this again when it has finished") from None
    with held:
        yield


class SweepStore:
    """The calling process's side of a sweep: each group's lock, the T̂ known so
    far, and the results store, which only this process writes.

    Parameters
    ----------
    store
        The results store.
    experiment, label
        The experiment's key and the profile label the rows are stored under.
    estimated
        The T̂ known before the sweep, by (noise, rate, run); the stage-1 groups add theirs.

    Attributes
    ----------
    rows
        The rows stored by this sweep, in the order they were stored.
    resumed
        ``{group description: epoch}`` for every group that continued from its checkpoint.
    """

    def __init__(self, store: ResultStore, experiment: str, label: str, estimated: dict[tuple, np.ndarray]) -> None:
        self.store, self.experiment, self.label, self.estimated = store, experiment, label, estimated
        self.rows: list[dict] = []
        self.resumed: dict[str, int] = {}
        self._held: dict[Path, tuple[contextlib.ExitStack, set[tuple]]] = {}

    def __enter__(self) -> SweepStore:
        return self

    def __exit__(self, *exc: object) -> None:
        """Release the locks of groups that did not finish (their checkpoints stay)."""
        for held, _ in self._held.values():
            held.close()
        self._held.clear()

    def ready(self, job: GroupJob) -> bool:
        """Whether every T̂ the group needs is known."""
        return all(key in self.estimated for key in job.needs)

    def inputs(self, job: GroupJob) -> dict[tuple, np.ndarray]:
        """The T̂ the group trains with, by (noise, rate, run)."""
        return {key: self.estimated[key] for key in job.needs}

    def start(self, job: GroupJob) -> bool:
        """Take the group's lock (:class:`GroupBusy` when another process holds it);
        False, with the lock released, when another process stored its runs meanwhile."""
        held = contextlib.ExitStack()
        held.enter_context(group_lock(job))
        done = self.store.done_cells(self.experiment)
        if all(cell_key(c.method, *c.noise_key, self.label) in done for c in job.cells):
            if job.method == STAGE_ONE:  # its stored T̂ feed the later groups
                self.estimated.update({c.noise_key: self.store.get_transition(self.experiment, *c.noise_key,
                                                                              self.label) for c in job.cells})
            held.close()
            return False
        self._held[job.checkpoint] = (held, done)
        return True

    def finish(self, job: GroupJob, result: GroupResult) -> None:
        """Store the group's T̂ and the rows not stored meanwhile, remove its checkpoint, release its lock."""
        held, done = self._held.pop(job.checkpoint)
        with held:
            self.estimated.update(result.transitions)
            self.store.put_transitions(self.experiment,
                                       [(*key, self.label, T_hat) for key, T_hat in result.transitions.items()])
            rows = [r for r in result.rows if cell_key(r["method"], r["noise"], r["rate"], r["run"], self.label)
                    not in done]
            self.store.append(rows)
            job.checkpoint.unlink(missing_ok=True)
        self.rows.extend(rows)
        if result.resumed_epoch:
            self.resumed[job.description] = result.resumed_epoch
