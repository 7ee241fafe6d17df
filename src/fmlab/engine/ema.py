"""Exponential moving average of a module: momentum encoders (MoCo, BYOL) and teachers (DINO).

``EMA`` is itself an ``nn.Module`` holding a frozen copy, so when an objective keeps one as an
attribute its averaged weights ride along in the objective's ``state_dict`` — checkpoints and
resume need nothing extra — while ``requires_grad=False`` keeps it out of the optimiser.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from fmlab.engine.schedule import cosine_momentum

__all__ = ["EMA", "cosine_momentum"]


class EMA(nn.Module):
    """``theta_ema <- m * theta_ema + (1 - m) * theta`` for parameters; buffers are copied.

    ``EMA(model, momentum)`` deep-copies ``model`` (use ``ema.module`` or call ``ema(x)``);
    ``update(model)`` after each optimiser step, optionally with this step's momentum from
    :func:`cosine_momentum`. Buffers (BatchNorm running statistics) are copied rather than
    averaged, as in timm's ModelEma and DINO, unless ``average_buffers=True``.
    """

    def __init__(self, model: nn.Module, momentum: float = 0.996,
                 average_buffers: bool = False) -> None:
        super().__init__()
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"EMA momentum must be in [0, 1], got {momentum}")
        self.module = copy.deepcopy(model)
        self.module.requires_grad_(False)
        self.module.eval()
        self.momentum = float(momentum)
        self.average_buffers = average_buffers

    def train(self, mode: bool = True) -> EMA:  # the copy always stays in eval mode
        super().train(mode)
        self.module.eval()
        return self

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    @torch.no_grad()
    def update(self, model: nn.Module, momentum: float | None = None) -> None:
        """Move the average toward ``model`` (same architecture as the copy)."""
        m = self.momentum if momentum is None else float(momentum)
        self.momentum = m
        src = dict(model.named_parameters())
        dst = [p for _, p in self.module.named_parameters()]
        new = [src[n].detach() for n, _ in self.module.named_parameters()]
        if dst:
            torch._foreach_mul_(dst, m)
            torch._foreach_add_(dst, new, alpha=1.0 - m)
        src_buf = dict(model.named_buffers())
        for name, b in self.module.named_buffers():
            s = src_buf[name]
            if self.average_buffers and b.is_floating_point():
                b.mul_(m).add_(s, alpha=1.0 - m)
            else:
                b.copy_(s)

    def set_momentum(self, step: int, total: int, base: float, final: float = 1.0) -> float:
        """Set the cosine-scheduled momentum for ``step`` of ``total``; returns it."""
        self.momentum = cosine_momentum(step, total, base, final)
        return self.momentum
