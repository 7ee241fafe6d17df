"""Exponential moving average of a generator's weights (what GAN papers sample and evaluate).

Reuses the engine's :class:`fmlab.engine.ema.EMA` (θ_ema ← d·θ_ema + (1−d)·θ on parameters,
buffers such as BatchNorm statistics and spectral-norm vectors copied) and adds the GAN warm-up
(BigGAN / StudioGAN ``ema_start``): for the first ``start_step`` updates the copy simply tracks G.
The update count is a buffer, so it rides along in ``state_dict`` with the averaged weights.
"""

from __future__ import annotations

import torch
from torch import nn

from fmlab.engine.ema import EMA as _EngineEMA
from fmlab.errors import ConfigError


class EMA(_EngineEMA):
    """The EMA generator: the engine's EMA plus a warm-up during which the copy tracks G.

    Args:
        model: the generator to average.
        decay: the EMA decay ``d`` in ``[0, 1)``.
        start_step: updates before averaging starts (the copy equals G until then).

    Examples:
        >>> import torch
        >>> g = torch.nn.Linear(2, 2)
        >>> ema = EMA(g, decay=0.5, start_step=1)
        >>> ema.update(g); int(ema.num_updates)
        1
    """

    num_updates: torch.Tensor

    def __init__(self, model: nn.Module, decay: float = 0.999, start_step: int = 0) -> None:
        if not 0.0 <= decay < 1.0:
            raise ConfigError(f"EMA decay must lie in [0, 1), got {decay}")
        super().__init__(model, momentum=decay)
        self.decay = float(decay)
        self.start_step = int(start_step)
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update(self, model: nn.Module, momentum: float | None = None) -> None:
        """One EMA step toward ``model``; decay 0 (a copy) before ``start_step`` updates."""
        if momentum is None:
            momentum = self.decay if int(self.num_updates) >= self.start_step else 0.0
        super().update(model, momentum=momentum)
        self.num_updates += 1
