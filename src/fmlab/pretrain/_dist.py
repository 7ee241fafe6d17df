"""Distributed helpers for losses, with single-process fallbacks (identity in one process).

Why ``gather_with_grad`` is not the engine's: ``fmlab.engine.distributed.gather_with_grad`` keeps
the autograd graph of the local rows only. Our contrastive losses take the local rows as anchors
and *all* gathered rows as keys, so each rank's loss also depends on the other ranks' rows; with
local-only gradients those key-side terms are lost and the DDP-averaged gradient is not the
gradient of the global loss. ``_GatherSum`` below sums every rank's gradient for each shard in its
backward (as ``torch.distributed.nn.functional.all_gather`` did before its deprecation), which
makes the DDP mean of the ranks' gradients exactly the global loss's gradient;
``tests/pretrain/test_distributed.py`` checks this against a single-process run.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def _initialised() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank_and_world() -> tuple[int, int]:
    if not _initialised():
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


class _GatherSum(torch.autograd.Function):
    """all_gather forward; backward all-reduces (sums) the gradient and keeps this rank's rows."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        ctx.rank, ctx.rows = dist.get_rank(), x.shape[0]
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.rows:(ctx.rank + 1) * ctx.rows]


def gather_with_grad(x: Tensor) -> Tensor:
    """Concatenate ``x`` from all ranks along dim 0, differentiably: the backward pass gives each
    rank the sum over ranks of the gradient of its own rows. Every rank passes the same shape."""
    if not _initialised():
        return x
    return _GatherSum.apply(x)


def all_gather_nograd(x: Tensor) -> Tensor:
    """Concatenate ``x`` from all ranks along dim 0, detached (labels, keys for a queue)."""
    if not _initialised():
        return x.detach()
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.detach().contiguous())
    return torch.cat(parts, dim=0)


def all_reduce_mean(x: Tensor) -> Tensor:
    """Mean over ranks (detached); identity in one process."""
    if not _initialised():
        return x.detach()
    y = x.detach().clone()
    dist.all_reduce(y)
    return y / dist.get_world_size()
