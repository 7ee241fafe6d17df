"""Exponential moving average of a generator's weights (what GAN papers sample and evaluate).

``EMA(G, decay)`` keeps a frozen copy; ``update(G)`` does θ_ema ← d·θ_ema + (1−d)·θ for every
floating-point parameter (d = 0 before ``start_step``, so the copy tracks G during warm-up) and
copies buffers (BatchNorm statistics, spectral-norm vectors) as they are.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from fmlab.errors import ConfigError


class EMA:
    def __init__(self, model: nn.Module, decay: float = 0.999, start_step: int = 0) -> None:
        if not 0.0 <= decay < 1.0:
            raise ConfigError(f"EMA decay must lie in [0, 1), got {decay}")
        self.decay = float(decay)
        self.start_step = int(start_step)
        self.num_updates = 0
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.decay if self.num_updates >= self.start_step else 0.0
        own = dict(self.module.named_parameters())
        for name, p in model.named_parameters():
            e = own[name]
            if e.dtype.is_floating_point:
                e.mul_(d).add_(p.detach(), alpha=1.0 - d)
            else:
                e.copy_(p)
        own_b = dict(self.module.named_buffers())
        for name, b in model.named_buffers():
            own_b[name].copy_(b)
        self.num_updates += 1

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "num_updates": self.num_updates,
                "decay": self.decay, "start_step": self.start_step}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.num_updates = int(state["num_updates"])
        self.decay = float(state["decay"])
        self.start_step = int(state["start_step"])
