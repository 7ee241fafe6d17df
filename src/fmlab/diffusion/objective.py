"""DDPM ε-prediction as an engine objective: ‖ε − ε_θ(√ᾱ_t x_0 + √(1−ᾱ_t) ε, t, y)‖² (Ho et al. 2020, eq. 14).

The engine's default path runs it (``loss, logs = objective(batch)``): t, ε and the
classifier-free-guidance label drop are drawn from the global torch RNG, which the engine
re-seeds from (seed, step) every step, so a resumed run draws the same numbers.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fmlab.diffusion.schedule import NoiseSchedule


class DiffusionObjective(nn.Module):
    """ε-prediction MSE of ``net`` under ``schedule``; labels from ``batch["labels"]``.

    Args:
        net: ε_θ(x_t, t, y) (e.g. :class:`fmlab.diffusion.unet.UNet`), classes y in [0, K].
        schedule: the noise schedule.
        p_uncond: probability of replacing a label by the null class K (classifier-free
            guidance training; 0 disables it).

    Examples:
        >>> from fmlab.diffusion.unet import LayerFactory, UNet
        >>> _ = torch.manual_seed(0)
        >>> obj = DiffusionObjective(UNet(LayerFactory("dense", num_classes=2), ch=8),
        ...                          NoiseSchedule("linear", 10), p_uncond=0.5)
        >>> loss, logs = obj({"images": torch.zeros(4, 1, 28, 28), "labels": torch.tensor([0, 1, 0, 1])})
        >>> loss.dim(), sorted(logs)
        (0, ['mse', 'uncond_frac'])
    """

    def __init__(self, net: nn.Module, schedule: NoiseSchedule, p_uncond: float = 0.0) -> None:
        super().__init__()
        self.net = net
        self.schedule = schedule
        self.p_uncond = float(p_uncond)

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Any]]:
        x0 = batch["images"].float()
        y = batch["labels"].long()
        b = x0.shape[0]
        t = torch.randint(0, self.schedule.steps, (b,), device=x0.device)
        noise = torch.randn_like(x0)
        drop = torch.rand(b, device=x0.device) < self.p_uncond
        y = torch.where(drop, torch.full_like(y, self.net.num_classes), y)
        xt = self.schedule.q_sample(x0, t, noise)
        loss = F.mse_loss(self.net(xt, t, y), noise)
        return loss, {"mse": loss.detach(), "uncond_frac": drop.float().mean()}
