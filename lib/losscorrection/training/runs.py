"""Many runs of one network trained as one batched model.

Reproducing the paper means training thousands of small networks, so the K
runs of a group share every kernel launch: the MNIST network's K weight sets
are stacked into ``(K, in, out)`` tensors (:class:`StackedMLP`), K CIFAR
ResNets become one network of grouped convolutions (:class:`GroupedRuns`), and
any other model falls back to K modules stepped in turn (:class:`ModuleRuns`).
All three offer the :class:`RunStack` interface the training loop uses, and
each run computes exactly what its own network would.
"""

from __future__ import annotations

import copy
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from .. import models
from .runtime import Runtime

__all__ = ["GroupedLinear", "GroupedRuns", "ModuleRuns", "RunStack", "StackedMLP", "group_modules"]


class RunStack(Protocol):
    """What the training loop needs of K runs trained together.

    ``forward(x, train, shared)`` takes per-run inputs ``(K, B, ...)`` (or one
    set ``(N, ...)`` shared by every run when ``shared``) and returns float32
    logits ``(K, B, c)``; ``snapshot``/``keep_best``/``load`` save the state
    of the runs, overwrite the saved state of the runs marked in a bool
    ``(K,)`` mask, and restore it (model selection and checkpoints).
    """

    def parameters(self) -> list[Tensor]: ...

    def kernels(self) -> list[Tensor]:
        """The weights of the convolution and dense layers (what weight decay penalises)."""
        ...

    def kernel_squares(self) -> Tensor:
        """Each run's ``Σ‖w‖²`` over its own :meth:`kernels`: float32 ``(K,)``, no gradient."""
        ...

    def forward(self, x: Tensor, train: bool, shared: bool = False) -> Tensor: ...

    def snapshot(self) -> Any: ...

    def keep_best(self, best: Any, improved: Tensor) -> None: ...

    def load(self, saved: Any) -> None: ...


def _kernels(module: nn.Module) -> list[Tensor]:
    """The weights of ``module``'s convolution and dense layers, grouped ones included."""
    return models.kernels(module) + [m.weight for m in module.modules() if isinstance(m, GroupedLinear)]


def _blocked_squares(kernels: list[Tensor], runs: int) -> Tensor:
    """``Σ‖w‖²`` per run of batched kernels that keep run k's block at
    ``w.reshape(runs, -1)[k]``: float32 ``(runs,)``."""
    with torch.no_grad():
        return sum(w.detach().float().reshape(runs, -1).pow(2).sum(dim=1) for w in kernels)


def _dropout(h: Tensor, p: float, generators: list[torch.Generator]) -> Tensor:
    """Inverted dropout with one generator per run: ``h (K, B, d)``. The masks are
    drawn in float32 whatever ``h``'s dtype, so bf16 runs see the fp32 runs' masks."""
    if p == 0.0:
        return h
    keep = torch.stack(
        [torch.rand(h.shape[1:], generator=g, device=h.device) for g in generators]
    ) >= p
    return h * keep / (1.0 - p)


class StackedMLP:
    """K copies of :class:`losscorrection.models.MLP` as batched tensors.

    Layer ``l`` holds ``W_l (K, in, out)`` and ``b_l (K, 1, out)``; a forward pass
    is one batched product per layer. Inputs are ``(K, B, d)`` (per-run batches)
    or ``(N, d)`` (one set shared by every run); outputs ``(K, B, c)`` logits.
    The optional batch-normalised head keeps per-run running statistics and,
    when affine, a per-run scale ``(K, 1, c)`` and shift ``(K, 1, c)``. Under
    a bf16 ``runtime`` the products run under bfloat16 autocast (weights, head
    and losses stay in float32).
    """

    def __init__(self, modules: list[models.MLP], dropout_seeds: list[int], runtime: Runtime) -> None:
        self.runtime = runtime
        device = runtime.device
        layers = [m.linear_layers() for m in modules]
        self.weights = [
            torch.stack([ls[i].weight.detach().t() for ls in layers]).to(device).requires_grad_()
            for i in range(len(layers[0]))
        ]
        self.biases = [
            torch.stack([ls[i].bias.detach()[None] for ls in layers]).to(device).requires_grad_()
            for i in range(len(layers[0]))
        ]
        self.p = float(modules[0].dropout)
        head = modules[0].head
        self.head = None
        self.head_affine: list[Tensor] = []
        if head is not None:
            self.head = (head.eps, head.momentum)
            self.running_mean = torch.zeros(len(modules), 1, head.num_features, device=device)
            self.running_var = torch.ones(len(modules), 1, head.num_features, device=device)
            if head.affine:
                self.head_affine = [
                    torch.stack([getattr(m.head, name).detach()[None] for m in modules]).to(device).requires_grad_()
                    for name in ("weight", "bias")
                ]
        self.generators = [torch.Generator(device=device).manual_seed(s) for s in dropout_seeds]

    def parameters(self) -> list[Tensor]:
        return self.weights + self.biases + self.head_affine

    def kernels(self) -> list[Tensor]:
        return list(self.weights)

    def kernel_squares(self) -> Tensor:
        return _blocked_squares(self.kernels(), self.weights[0].shape[0])

    def state(self) -> list[Tensor]:
        extra = [self.running_mean, self.running_var] if self.head else []
        return self.parameters() + extra

    def forward(self, x: Tensor, train: bool, shared: bool = False) -> Tensor:
        """``shared`` inputs ``(N, d)`` broadcast against the stacked weights."""
        h = x
        last = len(self.weights) - 1
        with self.runtime.autocast():
            for i, (W, b) in enumerate(zip(self.weights, self.biases)):
                h = torch.matmul(h, W) + b
                if i < last:
                    h = torch.relu(h)
                    if train:
                        h = _dropout(h, self.p, self.generators)
        h = h.float()
        return self._head(h, train) if self.head else h

    def _head(self, h: Tensor, train: bool) -> Tensor:
        """Batch normalisation of the logits ``h (K, B, c)``, per run and class."""
        eps, momentum = self.head
        if train:
            mean = h.mean(dim=1, keepdim=True)
            var = h.var(dim=1, keepdim=True, unbiased=False)
            with torch.no_grad():
                n = h.shape[1]
                self.running_mean.lerp_(mean, momentum)
                self.running_var.lerp_(var * n / max(n - 1, 1), momentum)
        else:
            mean, var = self.running_mean, self.running_var
        normalised = (h - mean) / torch.sqrt(var + eps)
        if self.head_affine:
            scale, shift = self.head_affine
            normalised = normalised * scale + shift
        return normalised

    def snapshot(self) -> list[Tensor]:
        return [t.detach().clone() for t in self.state()]

    def keep_best(self, best: list[Tensor], improved: Tensor) -> None:
        for saved, current in zip(best, self.state()):
            saved[improved] = current.detach()[improved]

    def load(self, saved: list[Tensor]) -> None:
        with torch.no_grad():
            for current, s in zip(self.state(), saved):
                current.copy_(s)


class ModuleRuns:
    """K independent ``nn.Module`` runs stepped in turn: the general fallback.

    Same interface as :class:`StackedMLP`. Each run's random layers (dropout)
    draw from the run's own generator, seeded by ``dropout_seeds``: torch's
    global generator is set to the run's stream for its forward pass and
    restored afterwards, so a run's masks do not depend on the runs beside it.
    The ``runtime`` places the modules (channels-last for convolutional ones)
    and sets the forward pass's precision (losses stay in float32).
    """

    def __init__(self, modules: list[nn.Module], runtime: Runtime, dropout_seeds: list[int] | None = None) -> None:
        self.runtime = runtime
        self.channels_last = runtime.uses_channels_last(modules[0])
        self.modules = [runtime.place(m) for m in modules]
        seeds = range(len(modules)) if dropout_seeds is None else dropout_seeds
        self.generators = [torch.Generator(device=runtime.device).manual_seed(s) for s in seeds]

    def parameters(self) -> list[Tensor]:
        return [p for m in self.modules for p in m.parameters()]

    def kernels(self) -> list[Tensor]:
        return [p for m in self.modules for p in _kernels(m)]

    def kernel_squares(self) -> Tensor:
        with torch.no_grad():
            return torch.stack([sum(w.detach().float().pow(2).sum() for w in _kernels(m)) for m in self.modules])

    def _global_generator(self) -> torch.Generator:
        device = self.runtime.device
        if device.type == "cuda":
            return torch.cuda.default_generators[device.index or torch.cuda.current_device()]
        return torch.default_generator

    def forward(self, x: Tensor, train: bool, shared: bool = False) -> Tensor:
        """``x``: ``(K, B, ...)`` per-run inputs, or ``(N, ...)`` when ``shared``;
        returns float32 logits ``(K, B, c)``."""
        outputs = []
        device = self.runtime.device
        cuda = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda, device_type=device.type), self.runtime.autocast():
            shared_stream = self._global_generator()
            for module, own_stream in zip(self.modules, self.generators):
                module.train(train)
                shared_stream.set_state(own_stream.get_state())
                inputs = x if shared else x[len(outputs)]
                if self.channels_last:
                    inputs = self.runtime.images(inputs)
                outputs.append(module(inputs))
                own_stream.set_state(shared_stream.get_state())
        return torch.stack(outputs).float()

    def snapshot(self) -> list[dict]:
        return [copy.deepcopy(m.state_dict()) for m in self.modules]

    def keep_best(self, best: list[dict], improved: Tensor) -> None:
        for k in torch.nonzero(improved).flatten().tolist():
            best[k] = copy.deepcopy(self.modules[k].state_dict())

    def load(self, saved: list[dict]) -> None:
        for module, state in zip(self.modules, saved):
            module.load_state_dict(state)


class GroupedLinear(nn.Module):
    """K dense layers applied to K channel groups: ``(B, K*d) -> (B, K*c)``."""

    def __init__(self, layers: list[nn.Linear]) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.stack([layer.weight.detach() for layer in layers]))  # (K, c, d)
        self.bias = nn.Parameter(torch.stack([layer.bias.detach() for layer in layers]))  # (K, c)

    def forward(self, h: Tensor) -> Tensor:
        K = self.weight.shape[0]
        out = torch.einsum("bkd,kcd->bkc", h.reshape(h.shape[0], K, -1), self.weight) + self.bias
        return out.reshape(h.shape[0], -1)


def _grouped_layer(layers: list[nn.Module]) -> nn.Module | None:
    """One layer computing K copies of ``layers`` side by side on K channel groups,
    or None for a layer without parameters (it acts per channel already)."""
    first, K = layers[0], len(layers)
    if isinstance(first, nn.Conv2d):
        grouped = nn.Conv2d(
            K * first.in_channels, K * first.out_channels, first.kernel_size, first.stride,
            first.padding, first.dilation, groups=K * first.groups, bias=first.bias is not None,
        )
    elif isinstance(first, (nn.BatchNorm1d, nn.BatchNorm2d)):
        grouped = type(first)(K * first.num_features, first.eps, first.momentum, first.affine)
    elif isinstance(first, nn.Linear):
        return GroupedLinear(layers)
    elif isinstance(first, (nn.modules.dropout._DropoutNd, models.SpatialDropout1d)):
        raise TypeError("cannot group layers that draw random masks (dropout): the runs would share "
                        "one random stream; train such models as ModuleRuns")
    elif not list(first.parameters(recurse=False)) and not list(first.buffers(recurse=False)):
        return None
    else:
        raise TypeError(f"cannot group layers of type {type(first).__name__}")
    with torch.no_grad():
        for name, tensor in [*grouped.named_parameters(), *grouped.named_buffers()]:
            if name != "num_batches_tracked":
                tensor.copy_(torch.cat([getattr(layer, name).detach() for layer in layers]))
    return grouped


def group_modules(modules: list[nn.Module]) -> nn.Module:
    """K identical convolutional networks as one network on K channel groups.

    Every convolution becomes a grouped convolution (``groups=K``, with its
    bias if it has one), every batch norm one over ``K*C`` channels with the
    same ``eps`` and ``momentum`` (so statistics stay per run), every dense
    layer a :class:`GroupedLinear`; element-wise layers, padding, pooling and
    residual sums act per channel unchanged. Input ``(B, K*C_in, H, W)``: run k reads
    channels ``k*C_in ... (k+1)*C_in``. Each tensor keeps the runs in
    contiguous blocks along its first axis, so ``t.view(K, -1)[k]`` is run k's.
    Raises TypeError for layers that cannot be grouped (embeddings, LSTMs).
    """
    grouped = copy.deepcopy(modules[0])
    for name, layer in list(grouped.named_modules()):
        if not name or list(layer.children()):
            continue
        replacement = _grouped_layer([m.get_submodule(name) for m in modules])
        if replacement is not None:
            parent, _, attr = name.rpartition(".")
            setattr(grouped.get_submodule(parent) if parent else grouped, attr, replacement)
    return grouped


class GroupedRuns:
    """K runs of a convolutional network trained as one grouped network
    (:func:`group_modules`): one kernel per layer for all runs, which is what
    keeps a GPU busy with small CIFAR ResNets. Same interface as :class:`StackedMLP`;
    each run computes exactly what its own module would. The ``runtime``
    places the network (channels-last unless turned off) and sets the forward
    pass's precision. ``compile=True`` runs the forward pass through
    ``torch.compile`` (same parameters and state).
    """

    def __init__(self, modules: list[nn.Module], runtime: Runtime, compile: bool = False) -> None:
        self.K = len(modules)
        self.runtime = runtime
        self.model = runtime.place(group_modules(modules))
        self.network = torch.compile(self.model) if compile else self.model

    def parameters(self) -> list[Tensor]:
        return list(self.model.parameters())

    def kernels(self) -> list[Tensor]:
        return _kernels(self.model)

    def kernel_squares(self) -> Tensor:
        return _blocked_squares(self.kernels(), self.K)

    def state(self) -> list[Tensor]:
        return [t for name, t in self.model.state_dict(keep_vars=True).items()
                if not name.endswith("num_batches_tracked")]

    def forward(self, x: Tensor, train: bool, shared: bool = False) -> Tensor:
        """``x``: ``(K, B, C, H, W)`` per-run images or ``(N, C, H, W)`` when ``shared``;
        returns float32 logits ``(K, B, c)``."""
        x = x.repeat(1, self.K, 1, 1) if shared else x.transpose(0, 1).reshape(
            x.shape[1], -1, *x.shape[3:])
        x = self.runtime.images(x)
        self.model.train(train)
        with self.runtime.autocast():
            out = self.network(x)
        return out.float().reshape(x.shape[0], self.K, -1).transpose(0, 1)

    def snapshot(self) -> list[Tensor]:
        return [t.detach().clone() for t in self.state()]

    def keep_best(self, best: list[Tensor], improved: Tensor) -> None:
        improved = improved.to(self.runtime.device)
        for saved, current in zip(best, self.state()):
            # runs are blocks along dim 0 in any memory format (channels-last included)
            saved.unflatten(0, (self.K, -1))[improved] = current.detach().unflatten(0, (self.K, -1))[improved]

    def load(self, saved: list[Tensor]) -> None:
        with torch.no_grad():
            for current, s in zip(self.state(), saved):
                current.copy_(s)

