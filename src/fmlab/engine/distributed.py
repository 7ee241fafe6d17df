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
    """This process's rank (0 outside ``torchrun``).

    Returns:
        The global rank of the current process.

    Examples:
        >>> get_rank()
        0
    """
    return current_dist().rank


def get_world_size() -> int:
    """The number of training processes (1 outside ``torchrun``).

    Returns:
        The world size.

    Examples:
        >>> get_world_size()
        1
    """
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


class _GatherSum(torch.autograd.Function):
    """all_gather forward; backward sums every rank's gradient and keeps this rank's rows."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.rank, ctx.rows = dist.get_rank(), x.shape[0]
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.rows:(ctx.rank + 1) * ctx.rows]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """All-gather ``x`` along dim 0, differentiably for every rank's rows.

    A contrastive loss on rank r uses its local rows as anchors and *all* gathered rows as keys,
    so it depends on the other ranks' rows too. The backward pass therefore all-reduces (sums) the
    gradient of the gathered tensor and hands each rank the slice of its own rows: with DDP's mean
    over ranks, the parameter gradient is then exactly that of the global-batch loss averaged
    over ranks' anchors (a local-shard-only gather, as open_clip's default, drops the key-side
    terms). Every rank must pass the same shape. Identity in one process.
    """
    if get_world_size() == 1:
        return x
    return _GatherSum.apply(x)



def broadcast_module(module: torch.nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers to every rank (what DDP does on wrapping).

    Args:
        module: the module, on the training device, in every process.
        src: the rank whose values win.
    """
    if get_world_size() == 1:
        return
    with torch.no_grad():
        for t in module.state_dict().values():
            if isinstance(t, torch.Tensor):
                dist.broadcast(t, src)


def average_gradients_before_step(optimizer: torch.optim.Optimizer) -> object:
    """Make ``optimizer.step()`` first average its parameters' gradients over ranks.

    The engine's manual-optimisation path uses this instead of DDP: an objective that steps its
    own optimisers (e.g. a GAN's D then G) gets synchronous data parallelism without any
    distributed code of its own. Every rank must produce the same set of gradients (same code,
    same parameters with ``grad`` not None), which a deterministic step does.

    Args:
        optimizer: the optimiser to hook.

    Returns:
        The hook handle (``.remove()`` undoes it).
    """
    def hook(opt: torch.optim.Optimizer, args: object, kwargs: object) -> None:
        world = get_world_size()
        grads = [p.grad for g in opt.param_groups for p in g["params"] if p.grad is not None]
        if world == 1 or not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat /= world
        offset = 0
        for g in grads:
            n = g.numel()
            g.copy_(flat[offset:offset + n].view_as(g))
            offset += n

    return optimizer.register_step_pre_hook(hook)
