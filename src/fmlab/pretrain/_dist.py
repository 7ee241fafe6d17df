"""Distributed helpers for losses, with single-process fallbacks.

The engine owns DDP (``fmlab.engine.distributed``); objectives import it lazily so this package
works (as identity) before or without the engine, and never imports the training loop.
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


def gather_with_grad(x: Tensor) -> Tensor:
    """Concatenate ``x`` from all ranks along dim 0; the local rows keep their gradient."""
    if not _initialised():
        return x
    try:
        from fmlab.engine.distributed import gather_with_grad as engine_gather
    except ImportError:  # engine not there: same semantics, written here
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.detach().contiguous())
        parts[dist.get_rank()] = x
        return torch.cat(parts, dim=0)
    return engine_gather(x)


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
