"""DDP plumbing: process-group setup from torchrun's environment, gathers, means.

Single-process runs go through the same calls, which then do nothing, so objectives can call
:func:`gather_with_grad` unconditionally.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from fmlab.errors import ConfigError


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: ``rank`` of ``world_size``, ``local_rank`` on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name}={raw!r} is not an integer") from None


def init_distributed(backend: str | None = None, timeout_s: float = 1800.0) -> DistInfo:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_*).

    Without those variables (or WORLD_SIZE=1) this is a no-op returning rank 0 of 1. When a
    group already exists (e.g. ``torch.multiprocessing.spawn`` code set it up) it is reused.
    Backend: nccl when CUDA is available, else gloo. On CUDA the device ``cuda:LOCAL_RANK`` is
    made current.
    """
    if dist.is_available() and dist.is_initialized():
        return current_dist()
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local = _env_int("LOCAL_RANK", rank)
    if world <= 1:
        return DistInfo(0, 1, 0)
    if not dist.is_available():
        raise ConfigError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    for var in ("MASTER_ADDR", "MASTER_PORT"):
        if var not in os.environ:
            raise ConfigError(f"WORLD_SIZE={world} but {var} is not set; launch with torchrun")
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local)
    dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=timeout_s))
    return DistInfo(rank, world, local)


def current_dist() -> DistInfo:
    """This process's place in the current group (rank 0 of 1 without one)."""
    if dist.is_available() and dist.is_initialized():
        rank = dist.get_rank()
        return DistInfo(rank, dist.get_world_size(), _env_int("LOCAL_RANK", rank))
    return DistInfo(0, 1, 0)


def get_rank() -> int:
    return current_dist().rank


def get_world_size() -> int:
    return current_dist().world_size


def barrier() -> None:
    if get_world_size() > 1:
        dist.barrier()


def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over ranks (a new tensor; no gradient). Identity in one process."""
    if get_world_size() == 1:
        return x.detach().clone()
    y = x.detach().clone()
    dist.all_reduce(y, op=dist.ReduceOp.SUM)
    return y / get_world_size()


def all_gather_nograd(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from every rank along dim 0 (rank order), without gradients."""
    world = get_world_size()
    if world == 1:
        return x.detach()
    parts = [torch.empty_like(x) for _ in range(world)]
    dist.all_gather(parts, x.detach().contiguous())
    return torch.cat(parts, dim=0)


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """All-gather ``x`` along dim 0; the local shard keeps its autograd graph.

    Other ranks' rows are constants here, exactly like open_clip's ``gather_features`` without
    ``gather_with_grad``: each rank back-propagates through its own rows only, and DDP's gradient
    averaging then sums the symmetric contributions. Every rank must pass the same shape.
    Identity in one process.
    """
    world = get_world_size()
    if world == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(world)]
    dist.all_gather(parts, x.detach().contiguous())
    parts[get_rank()] = x
    return torch.cat(parts, dim=0)

