"""Momentum (EMA) copies for MoCo's key encoder and DINO's teacher.

Kept local (a dozen lines) rather than borrowing the engine's ``EMA`` wrapper because these
copies must run in the *same* train/eval mode as the online network: MoCo's key encoder and
DINO's teacher normalise with batch statistics in training, as in the papers.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from fmlab.engine.schedule import cosine_momentum  # the one schedule (re-exported for dino/moco)

__all__ = ["cosine_momentum", "frozen_copy", "momentum_update_"]


def frozen_copy(module: nn.Module) -> nn.Module:
    """A deep copy that the optimiser never sees (``requires_grad_(False)``)."""
    twin = copy.deepcopy(module)
    twin.requires_grad_(False)
    return twin


@torch.no_grad()
def momentum_update_(target: nn.Module, source: nn.Module, momentum: float) -> None:
    """theta_t <- m * theta_t + (1 - m) * theta_s for parameters; buffers are copied."""
    t_params = [p for p in target.parameters()]
    s_params = [p.detach() for p in source.parameters()]
    if len(t_params) != len(s_params):
        raise RuntimeError("momentum_update_: modules have different parameter lists")
    if t_params:
        torch._foreach_mul_(t_params, momentum)
        torch._foreach_add_(t_params, s_params, alpha=1.0 - momentum)
    for tb, sb in zip(target.buffers(), source.buffers()):
        tb.copy_(sb)
