"""The body of the IMDB embedding model as one fused operation (§5.1).

``logits = (keep[:, None, :] * table[ids]).flatten(1) @ weight.T`` for token
ids ``(n, length)``, an embedding table ``(vocab, dim)``, per-review dropout
multipliers ``keep`` ``(n, dim)`` and a dense layer ``(classes, length * dim)``.

Written as a composition of PyTorch layers, a training step materialises the
gathered ``(n, length, dim)`` activation four to five times (embedding,
dropout, ReLU, their gradients and the embedding's own backward) and keeps it
for the backward pass: for a batch of 128 reviews that is 10 MB per run, more
than the CPU's caches hold. :func:`gathered_linear` instead

* gathers :data:`CHUNK` reviews at a time (about 1.3 MB), scales them in place,
  uses them and drops them; the backward pass gathers them again (cheaper than
  reading them back from memory) and scatters the table gradient with one
  ``index_add_``;
* skips the padding: reviews are padded at the front (Keras' ``pad_sequences``),
  about half of all IMDB positions at length 400. The reviews of a batch are
  processed from the most padded to the least, and the leading positions where
  every review of a chunk holds the padding id contribute through prefix sums
  of ``weight`` instead of being gathered.

On the CPU a compiled kernel (:mod:`.native`, ``gathered_kernel.c``) does the
same one review at a time, with no chunks: each real token's table row is
read once, and the padding goes through the same prefix sums. The chunked
PyTorch formulation is the path where no C compiler is found, and on CUDA.

The result and both gradients equal the composition's up to float rounding,
on both paths (``tests/test_models.py`` checks it, padding included).
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import native

__all__ = ["CHUNK", "gathered_linear"]

CHUNK = 16  # reviews gathered at a time: their (16, 400, 50) activation, 1.3 MB, stays in cache


class _Plan:
    """A batch sorted from the most padded review to the least and cut into
    chunks of :data:`CHUNK` reviews: ``order`` (n,), the sorted ``ids``,
    ``keep`` (or None) and, per chunk, its slice and the number of leading
    positions where all its reviews hold ``padding_id``."""

    def __init__(self, ids: Tensor, keep: Tensor | None, padding_id: int | None) -> None:
        n, length = ids.shape
        if padding_id is None:
            lead = ids.new_zeros(n)
        else:
            real = ids != padding_id
            lead = torch.where(real.any(1), real.int().argmax(1), length)
        lead, self.order = torch.sort(lead, descending=True)
        self.ids = ids[self.order]
        self.keep = None if keep is None else keep[self.order]
        self.slices = [slice(s, s + CHUNK) for s in range(0, n, CHUNK)]
        self.starts = lead[CHUNK - 1::CHUNK].tolist() + ([] if n % CHUNK == 0 else [int(lead[-1])])

    def chunks(self, table: Tensor):
        """Yield ``(rows, start, keep[rows, None, :] * table[ids[rows, start:]])``."""
        for rows, start in zip(self.slices, self.starts):
            part = self.ids[rows, start:]
            gathered = table.index_select(0, part.reshape(-1)).view(*part.shape, table.shape[1])
            if self.keep is not None:
                gathered.mul_(self.keep[rows, None, :])
            yield rows, start, gathered


class _GatheredLinear(torch.autograd.Function):
    """See the module docstring; ``weight`` is viewed as ``(classes, length, dim)``."""

    @staticmethod
    def forward(ctx, ids: Tensor, table: Tensor, keep: Tensor | None, weight: Tensor,
                padding_id: int | None) -> Tensor:
        n, length = ids.shape
        dim = table.shape[1]
        w = weight.view(-1, length, dim)
        plan = _Plan(ids, keep, padding_id)
        # prefix[c, s] = sum over t < s of w[c, t]: the padding's weight for a lead of s
        prefix = torch.cat([w.new_zeros(w.shape[0], 1, dim), w.cumsum(1)], dim=1)
        pad = None if padding_id is None else table[padding_id]
        logits = weight.new_empty(n, w.shape[0])
        for rows, start, gathered in plan.chunks(table):
            out = torch.mm(gathered.flatten(1), weight[:, start * dim:].t(), out=logits[rows])
            if start:
                kept_pad = pad if plan.keep is None else plan.keep[rows] * pad
                out += kept_pad.expand(len(gathered), dim) @ prefix[:, start].t()
        ctx.save_for_backward(table, weight, prefix)
        ctx.plan, ctx.padding_id = plan, padding_id
        return logits.index_copy(0, plan.order, logits)

    @staticmethod
    def backward(ctx, grad: Tensor):
        table, weight, prefix = ctx.saved_tensors
        plan, padding_id = ctx.plan, ctx.padding_id
        length, dim = plan.ids.shape[1], table.shape[1]
        grad = grad[plan.order]
        grad_weight = torch.zeros_like(weight)
        grad_table = torch.zeros_like(table)
        # lead_grad[:, s]: the padding's weight gradient shared by the positions t < s
        lead_grad = weight.new_zeros(weight.shape[0], length + 1, dim)
        for rows, start, gathered in plan.chunks(table):
            g = grad[rows]
            grad_weight[:, start * dim:].addmm_(g.t(), gathered.flatten(1))
            grad_gathered = (g @ weight[:, start * dim:]).view(gathered.shape)
            if plan.keep is not None:
                grad_gathered.mul_(plan.keep[rows, None, :])
            grad_table.index_add_(0, plan.ids[rows, start:].reshape(-1), grad_gathered.view(-1, dim))
            if start:
                kept = g.new_ones(len(g), dim) if plan.keep is None else plan.keep[rows]
                lead_grad[:, start] += (g.t() @ kept) * table[padding_id]
                grad_table[padding_id] += (kept * (g @ prefix[:, start])).sum(0)
        # position t < s receives lead_grad[:, s]: a suffix sum over s
        suffix = lead_grad.flip(1).cumsum(1).flip(1)
        grad_weight += suffix[:, 1:].reshape_as(grad_weight)
        return None, grad_table, None, grad_weight, None


def _pointer(tensor: Tensor | None) -> int | None:
    return None if tensor is None else tensor.data_ptr()


class _NativeGatheredLinear(torch.autograd.Function):
    """The same operation through the compiled kernel (:mod:`.native`): one
    review at a time, its real tokens read once, no chunks and no sorting."""

    @staticmethod
    def forward(ctx, ids: Tensor, table: Tensor, keep: Tensor | None, weight: Tensor,
                padding_id: int | None) -> Tensor:
        (n, length), (vocab, dim), classes = ids.shape, table.shape, weight.shape[0]
        ids, table, weight = ids.long().contiguous(), table.contiguous(), weight.contiguous()
        keep = None if keep is None else keep.float().contiguous()
        padding_id = -1 if padding_id is None else padding_id
        logits = weight.new_empty(n, classes)
        lead = ids.new_empty(n)
        prefix = weight.new_empty(classes, length + 1, dim)
        bad = native.kernel().gathered_forward(
            ids.data_ptr(), n, length, table.data_ptr(), vocab, dim, _pointer(keep), weight.data_ptr(),
            classes, padding_id, logits.data_ptr(), lead.data_ptr(), prefix.data_ptr())
        if bad >= 0:
            raise ValueError(f"token ids must lie in [0, {vocab}); review {bad // length} holds "
                             f"{int(ids.view(-1)[bad])} at position {bad % length}")
        ctx.save_for_backward(ids, lead, table, keep, weight, prefix)
        ctx.padding_id = padding_id
        return logits

    @staticmethod
    def backward(ctx, grad: Tensor):
        ids, lead, table, keep, weight, prefix = ctx.saved_tensors
        (n, length), dim, classes = ids.shape, table.shape[1], weight.shape[0]
        grad = grad.float().contiguous()
        grad_table, grad_weight = torch.zeros_like(table), torch.zeros_like(weight)
        lead_grad = weight.new_zeros(classes, length + 1, dim)
        native.kernel().gathered_backward(
            ids.data_ptr(), lead.data_ptr(), n, length, table.data_ptr(), dim, _pointer(keep),
            weight.data_ptr(), prefix.data_ptr(), classes, grad.data_ptr(), ctx.padding_id,
            grad_table.data_ptr(), grad_weight.data_ptr(), lead_grad.data_ptr())
        return None, grad_table, None, grad_weight, None


def gathered_linear(ids: Tensor, table: Tensor, keep: Tensor | None, weight: Tensor,
                    padding_id: int | None = 0, native_kernel: bool = True) -> Tensor:
    """``(keep[:, None, :] * table[ids]).flatten(1) @ weight.T`` without materialising it.

    ``ids`` int64 ``(n, length)`` rows of ``table`` ``(vocab, dim)``; ``keep``
    ``(n, dim)`` per-review multipliers of each embedding dimension (spatial
    dropout) or ``None``; ``weight`` ``(classes, length * dim)``;
    ``padding_id``: the id reviews are padded with at the front (``None``: no
    padding to skip; any id anywhere gives the same numbers, only faster or
    not). Returns float32 ``(n, classes)``, without a bias. Gradients flow to
    ``table`` and ``weight``. Runs in float32 under autocast too: each logit is
    a sum of ``length * dim`` (20,000) terms. On the CPU, with
    ``native_kernel`` and where :func:`.native.kernel` can be had, the compiled
    kernel computes it; otherwise the chunked PyTorch formulation (also on
    CUDA).
    """
    if ids.dim() != 2 or table.dim() != 2 or weight.shape[-1] != ids.shape[1] * table.shape[1]:
        raise ValueError(f"expected ids (n, length), table (vocab, dim) and weight (classes, length * dim), "
                         f"got {tuple(ids.shape)}, {tuple(table.shape)} and {tuple(weight.shape)}")
    if keep is not None and keep.shape != (ids.shape[0], table.shape[1]):
        raise ValueError(f"expected keep of shape ({ids.shape[0]}, {table.shape[1]}), got {tuple(keep.shape)}")
    compiled = native_kernel and ids.device.type == "cpu" and native.kernel() is not None
    function = _NativeGatheredLinear if compiled else _GatheredLinear
    with torch.autocast(ids.device.type, enabled=False):
        return function.apply(ids, table.float(), keep, weight.float(), padding_id)
