"""The results store: one append-only CSV per experiment, one row per finished
run with its provenance (device, commit, time), and the estimated matrices T̂
beside it.

Every number of the book's Table 2 blocks and Figure 1 panels is read from
here; training appends to it (Algorithm 1's stage-1 T̂ included, so the
T̂ methods of a run can be trained later) and skips the cells already stored.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .atomic import atomic_write_text, locked

__all__ = [
    "CELL_KEY",
    "COLUMNS",
    "ResultStore",
    "cell_key",
    "device_description",
    "git_commit",
    "rate_key",
    "timestamp",
]

COLUMNS = (
    "experiment", "model", "method", "noise", "rate", "run", "seed", "profile", "epochs", "train_size",
    "precision", "test_accuracy", "selected_epoch", "val_loss", "val_accuracy", "T_error", "identity_mix",
    "wall_seconds", "device", "torch_version", "git_commit", "timestamp",
)
CELL_KEY = ("method", "noise", "rate", "run", "profile")


def rate_key(rate: float) -> float:
    """A noise rate as stored and compared: rounded to 1e-6."""
    return round(float(rate), 6)


def cell_key(method: str, noise: str, rate: float, run: int, profile: str) -> tuple:
    """The identity of one stored run: (method, noise, rate rounded to 1e-6, run, profile)."""
    return (method, noise, rate_key(rate), int(run), profile)


class ResultStore:
    """Append-only CSV files ``<root>/<experiment>.csv`` with exactly :data:`COLUMNS`.

    A cell is identified by (method, noise, rate, run, profile); :meth:`done_cells`
    lets sweeps skip finished cells. Estimated matrices T̂ are kept beside the
    CSV in ``<experiment>.transitions.json``. Every write holds an inter-process
    lock (``<file>.lock``) for its read-modify-write and replaces the file
    atomically, so concurrent sweeps never lose each other's rows and a crash
    never leaves a half-written file.
    """

    def __init__(self, root: str | os.PathLike = "results") -> None:
        self.root = Path(root)

    def path(self, experiment: str) -> Path:
        return self.root / f"{experiment}.csv"

    def load(self, experiment: str) -> pd.DataFrame:
        """Every stored run of ``experiment`` (an empty frame with :data:`COLUMNS` when none)."""
        path = self.path(experiment)
        if not path.exists():
            return pd.DataFrame(columns=list(COLUMNS))
        frame = pd.read_csv(path)
        if tuple(frame.columns) != COLUMNS:
            raise ValueError(f"{path} does not have the expected columns {', '.join(COLUMNS)}")
        return frame

    def load_all(self) -> pd.DataFrame:
        """Every stored run of every experiment in the store, one frame with :data:`COLUMNS`."""
        frames = [self.load(path.stem) for path in sorted(self.root.glob("*.csv"))]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(COLUMNS))

    def has(self, experiment: str, method: str, noise: str, rate: float, run: int, profile: str) -> bool:
        """Whether the run (method, noise, rate, run, profile) is stored."""
        return cell_key(method, noise, rate, run, profile) in self.done_cells(experiment)

    def done_cells(self, experiment: str) -> set[tuple]:
        """The :func:`cell_key` of every stored run of ``experiment``."""
        frame = self.load(experiment)
        return {cell_key(*row) for row in frame[list(CELL_KEY)].itertuples(index=False)}

    def append(self, rows: list[dict]) -> None:
        """Append finished runs (dicts with every column of :data:`COLUMNS`)."""
        if not rows:
            return
        by_experiment: dict[str, list[dict]] = {}
        for row in rows:
            missing = set(COLUMNS) - set(row)
            if missing:
                raise ValueError(f"result row is missing columns {sorted(missing)}")
            by_experiment.setdefault(row["experiment"], []).append({c: row[c] for c in COLUMNS})
        for experiment, new in by_experiment.items():
            with locked(self.path(experiment)):
                frame = pd.concat([self.load(experiment), pd.DataFrame(new)], ignore_index=True)
                atomic_write_text(self.path(experiment), frame.to_csv(index=False))

    # -- estimated transition matrices -------------------------------------------------

    def _transitions_path(self, experiment: str) -> Path:
        return self.root / f"{experiment}.transitions.json"

    @staticmethod
    def _transition_key(noise: str, rate: float, run: int, profile: str) -> str:
        return f"{noise}/{rate_key(rate):g}/{int(run)}/{profile}"

    def load_transitions(self, experiment: str) -> dict[str, np.ndarray]:
        """Every stored T̂ of ``experiment``, keyed ``noise/rate/run/profile``."""
        path = self._transitions_path(experiment)
        if not path.exists():
            return {}
        return {k: np.array(v) for k, v in json.loads(path.read_text()).items()}

    def get_transition(self, experiment: str, noise: str, rate: float, run: int, profile: str):
        """The stored T̂ of a (noise, rate, run, profile) cell, or None."""
        return self.load_transitions(experiment).get(self._transition_key(noise, rate, run, profile))

    def put_transitions(self, experiment: str, items: list[tuple[str, float, int, str, np.ndarray]]) -> None:
        """Store T̂s given as ``(noise, rate, run, profile, T_hat)``, keeping the others.

        Entries are stored as float64 at full precision (JSON writes each float's
        shortest exact representation), so :meth:`get_transition` returns them bit
        for bit."""
        if not items:
            return
        path = self._transitions_path(experiment)
        with locked(path):
            stored = {k: v.tolist() for k, v in self.load_transitions(experiment).items()}
            for noise, rate, run, profile, T_hat in items:
                key = self._transition_key(noise, rate, run, profile)
                stored[key] = np.asarray(T_hat, dtype=np.float64).tolist()
            atomic_write_text(path, json.dumps(stored, indent=0, sort_keys=True))


# ------------------------------------------------------------------------ provenance


def git_commit(cwd: str | os.PathLike | None = None) -> str:
    """Short commit hash (``+dirty`` if modified) of the git tree holding ``cwd``,
    by default this package's own source; ``unknown`` outside a git tree."""
    cwd = Path(__file__).resolve().parent if cwd is None else cwd

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()

    try:
        commit = git("rev-parse", "--short=12", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def device_description(device: torch.device | str) -> str:
    """A human-readable name of the device a run used, e.g. ``cuda: NVIDIA H100 80GB HBM3``."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    cpu = platform.processor() or platform.machine()
    threads = torch.get_num_threads()
    return f"cpu: {cpu}, {threads} thread{'' if threads == 1 else 's'}"


def timestamp() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
