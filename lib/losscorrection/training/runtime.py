"""Where runs train and in what arithmetic, decided once.

A :class:`Runtime` names the device, whether the forward pass runs under
bfloat16 autocast, and whether convolutional networks use the channels-last
memory layout. :func:`~losscorrection.training.run_cells` resolves one per
call (:meth:`Runtime.resolve`); the run stacks, the checkpoint names and the
provenance of every stored row read it, so the three always agree.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..store import device_description

__all__ = ["PRECISIONS", "Runtime", "auto_bf16", "resolve_device"]

PRECISIONS = ("auto", "fp32", "bf16")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto``: CUDA when available, else the CPU; ValueError when CUDA is asked
    for and absent."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available (use --device cpu)")
    return device


def auto_bf16(model: str, device: torch.device, cpu_bf16: bool | None = None) -> bool:
    """Whether ``precision="auto"`` trains ``model`` under bfloat16 autocast on ``device``.

    On CUDA every model but the MLP (as before). On a CPU with native bf16
    arithmetic (``cpu_bf16``, default: AVX-512 BF16 or AMX) the residual
    networks, the LSTM and the MLP: there bf16 and the channels-last layout
    train ResNet-14 2.3x faster than fp32 (1,435 against 631 images/s on a
    2-core AVX-512 BF16 CPU), and the MNIST-10k block trained in bf16 is
    close to the fp32 one: a paired t-test over the runs of the same seed
    separates 1 of the 40 cells at p < 0.05, and the mean difference is -0.02
    points, 95 % interval over the cells [-0.09, +0.05]. The IMDB embedding
    model stays in fp32: its cost is memory traffic, which autocast does not
    cut."""
    if device.type == "cuda":
        return model != "mlp"
    if cpu_bf16 is None:
        cpu_bf16 = any(getattr(torch.cpu, probe, lambda: False)()
                       for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
    return cpu_bf16 and model != "imdb_embedding"


@dataclass(frozen=True)
class Runtime:
    """The device, precision and memory layout of a group of runs.

    Attributes
    ----------
    device
        Where the weights, data and losses live (a string is converted).
    bf16
        Run the forward pass under bfloat16 autocast; weights, optimiser state
        and losses stay float32.
    channels_last
        Keep convolutional networks and their image batches ``(B, C, H, W)``
        in the channels-last layout: faster on CUDA and on AVX-512 CPUs (878
        against 631 images/s for ResNet-14 in fp32 on two cores). Networks
        without convolutions are left as they are.
    """

    device: torch.device
    bf16: bool = False
    channels_last: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "device", torch.device(self.device))

    @classmethod
    def resolve(cls, model: str, device: str | torch.device = "auto", precision: str = "auto") -> Runtime:
        """The runtime for ``model`` (a :func:`~losscorrection.models.build_model`
        name): ``device`` through :func:`resolve_device`; ``precision`` ``fp32``,
        ``bf16`` or ``auto`` (:func:`auto_bf16`)."""
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; known: {', '.join(PRECISIONS)}")
        device = resolve_device(device)
        return cls(device, bf16=precision == "bf16" or (precision == "auto" and auto_bf16(model, device)))

    @property
    def precision(self) -> str:
        """``bf16`` or ``fp32``, as the results store records it."""
        return "bf16" if self.bf16 else "fp32"

    def describe(self) -> str:
        """The device as the results store records it, e.g. ``cpu: x86_64, 2 threads``."""
        return device_description(self.device)

    def autocast(self) -> contextlib.AbstractContextManager:
        """The context a forward pass runs in: bfloat16 autocast when ``bf16``, else a no-op."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def uses_channels_last(self, module: nn.Module) -> bool:
        """Whether ``module`` trains channels-last: it has convolutions and the layout is on."""
        return self.channels_last and any(isinstance(layer, nn.Conv2d) for layer in module.modules())

    def place(self, module: nn.Module) -> nn.Module:
        """``module`` on the device, in the channels-last layout when it :meth:`uses_channels_last`."""
        module = module.to(self.device)
        return module.to(memory_format=torch.channels_last) if self.uses_channels_last(module) else module

    def images(self, x: Tensor) -> Tensor:
        """A convolutional network's input batch in the layout of its weights:
        ``(B, C, H, W)`` channels-last when the layout is on; other shapes unchanged."""
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x
