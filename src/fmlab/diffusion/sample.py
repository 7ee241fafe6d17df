"""Seeded samplers: ancestral DDPM (T steps) and deterministic DDIM (η = 0, a few steps, for CPU speed).

Classifier-free guidance: ε̂ = (1 + w)·ε_θ(x, t, y) − w·ε_θ(x, t, ∅) with the null class K (w = 0
turns it off and halves the cost). Every draw comes from one CPU ``torch.Generator`` seeded by
``seed``, so the same call gives the same images.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from fmlab.diffusion.schedule import NoiseSchedule
from fmlab.errors import ConfigError

SAMPLERS = ("ddpm", "ddim")


def _eps(net: nn.Module, x: Tensor, t: int, y: Tensor, guidance: float) -> Tensor:
    tt = torch.full((x.shape[0],), t, dtype=torch.long)
    eps = net(x, tt, y)
    if guidance:
        eps_u = net(x, tt, torch.full_like(y, net.num_classes))
        eps = (1 + guidance) * eps - guidance * eps_u
    return eps


@torch.no_grad()
def sample(net: nn.Module, schedule: NoiseSchedule, labels: Tensor, *, sampler: str = "ddim",
           steps: int = 50, guidance: float = 0.0, seed: int = 0,
           shape: tuple[int, int, int] = (1, 28, 28)) -> Tensor:
    """Draw one image per label in ``labels`` (B,), returned in [-1, 1] as (B, C, H, W).

    Args:
        net: ε_θ(x, t, y); put in eval mode here.
        schedule: the schedule it was trained with.
        labels: classes in [0, K] (K = unconditional).
        sampler: ``ddpm`` (ancestral, all T steps, σ_t² = β̃_t) or ``ddim`` (η = 0).
        steps: DDIM steps (evenly spaced over T); ignored by ``ddpm``.
        guidance: classifier-free guidance weight w (0: none).
        seed: seed of the noise.
        shape: (C, H, W) of one image.

    Returns:
        The images, clamped to [-1, 1].

    Examples:
        >>> from fmlab.diffusion.unet import LayerFactory, UNet
        >>> net = UNet(LayerFactory("dense", num_classes=2), ch=8)
        >>> x = sample(net, NoiseSchedule("linear", 20), torch.tensor([0, 1]), steps=3)
        >>> x.shape, bool(x.abs().max() <= 1)
        (torch.Size([2, 1, 28, 28]), True)
    """
    if sampler not in SAMPLERS:
        raise ConfigError(f"sampler: {sampler!r} must be one of {', '.join(SAMPLERS)}")
    if steps < 1:
        raise ConfigError(f"sampling steps: {steps} must be >= 1")
    gen = torch.Generator().manual_seed(int(seed))
    was = net.training
    net.eval()
    try:
        x = torch.randn((len(labels), *shape), generator=gen)
        y = labels.long()
        if sampler == "ddpm":
            for t in reversed(range(schedule.steps)):
                tt = torch.full((len(y),), t, dtype=torch.long)
                x0 = schedule.predict_x0(x, tt, _eps(net, x, t, y, guidance)).clamp(-1, 1)
                mean, var = schedule.posterior(x0, x, tt)
                noise = torch.randn(x.shape, generator=gen) if t > 0 else torch.zeros_like(x)
                x = mean + var.sqrt() * noise
        else:
            ts = torch.linspace(schedule.steps - 1, 0, min(steps, schedule.steps)).round().long()
            for i, t in enumerate(ts.tolist()):
                tt = torch.full((len(y),), t, dtype=torch.long)
                eps = _eps(net, x, t, y, guidance)
                x0 = schedule.predict_x0(x, tt, eps).clamp(-1, 1)
                eps = (x - schedule.sqrt_abar[t].float() * x0) / schedule.sqrt_1m_abar[t].float()
                a_prev = float(schedule.abar[ts[i + 1]]) if i + 1 < len(ts) else 1.0
                x = a_prev ** 0.5 * x0 + (1 - a_prev) ** 0.5 * eps
    finally:
        net.train(was)
    return x.clamp(-1, 1)
