"""Distributed helpers for the objectives: the engine's, plus ``rank_and_world``.

``gather_with_grad`` sums every rank's gradient for each shard in its backward, which makes the
DDP mean of the ranks' gradients exactly the global loss's gradient;
``tests/pretrain/test_distributed.py`` checks this against a single-process run.
"""

from __future__ import annotations

from fmlab.engine.distributed import (  # noqa: F401 - re-exported for the objectives
    all_gather_nograd,
    all_reduce_mean,
    current_dist,
    gather_with_grad,
)


def rank_and_world() -> tuple[int, int]:
    info = current_dist()
    return info.rank, info.world_size
