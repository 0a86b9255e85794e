"""Checkpoint and resume of a group of runs: the whole training state (networks,
optimiser, learning-rate schedule, model selection and every random stream)
written atomically at most once a :data:`CHECKPOINT_SECONDS`, so that an
interrupted group continues where it stopped and ends bit-identical to an
uninterrupted one.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from ..atomic import atomic_write

__all__ = ["CHECKPOINT_SECONDS", "load_checkpoint", "rng_states", "save_checkpoint", "set_rng_states", "to_device"]

CHECKPOINT_SECONDS = 60.0  # a group's training state is saved at most this often


def to_device(obj, device: torch.device):
    """``obj`` (tensors in nested lists and dicts) with every tensor on ``device``."""
    if isinstance(obj, Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_device(v, device) for v in obj]
    return obj


def rng_states(streams: dict[str, list[torch.Generator]], device: torch.device) -> dict:
    """The state of every random stream a group draws from: its named per-run
    generators (data order, augmentation, dropout) and torch's global ones."""
    return dict(
        streams={name: [g.get_state() for g in generators] for name, generators in streams.items()},
        cpu=torch.get_rng_state(),
        cuda=torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
    )


def set_rng_states(states: dict, streams: dict[str, list[torch.Generator]], device: torch.device) -> None:
    """Restore what :func:`rng_states` saved into the same named generators."""
    for name, generators in streams.items():
        for g, state in zip(generators, states["streams"][name], strict=True):
            g.set_state(state)
    torch.set_rng_state(states["cpu"])
    if device.type == "cuda" and states["cuda"] is not None:
        torch.cuda.set_rng_state(states["cuda"], device)


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Write ``state`` to ``path`` through a temporary file and an atomic rename, so
    that an interruption leaves either the previous checkpoint or the new one."""
    atomic_write(path, lambda handle: torch.save(state, handle))


def load_checkpoint(path: str | Path) -> dict | None:
    """The state saved at ``path`` (tensors on the CPU), or None when there is none.

    Checkpoints are committed and travel between clones, so they are read
    with ``weights_only=True``: tensors, numbers, strings and containers only,
    never code. A file that cannot be read so raises ValueError naming it."""
    if not Path(path).is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError or EOFError by cause
        raise ValueError(f"checkpoint {path} cannot be read ({type(err).__name__}); delete it to train "
                         "its group from the start") from None
