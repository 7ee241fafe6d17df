"""DDPM noise schedules: β_t, ᾱ_t = Π_{s≤t}(1 − β_s), the forward process q(x_t | x_0) and its posterior.

Why a table and not a formula at each call: sampling and training index the same few arrays
(float64, built once) so the two can never disagree, and the tests check the table against the
closed forms (Ho et al. 2020, eq. 4, 6, 7; Nichol & Dhariwal 2021, eq. 17 for ``cosine``).
Timesteps are 0-based: ``t = 0`` is the first noising step (β_1 in the paper).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from fmlab.errors import ConfigError

SCHEDULES = ("linear", "cosine")


def make_betas(name: str, steps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> Tensor:
    """β_0..β_{T−1} (float64) of a ``linear`` or ``cosine`` schedule.

    Why both: ``linear`` is DDPM's (β from 1e-4 to 0.02 at T = 1000, scaled by 1000/T so a short
    T keeps the same total noise, clipped at 0.999 for a very short T); ``cosine`` (ᾱ_t = f(t)/f(0), f(t) = cos²(((t/T)+s)/(1+s)·π/2),
    s = 0.008, β clipped at 0.999) destroys information more evenly, which helps at 28×28.

    Args:
        name: ``linear`` or ``cosine``.
        steps: T, the number of diffusion steps (>= 2).
        beta_start: β_1 of the linear schedule at T = 1000.
        beta_end: β_T of the linear schedule at T = 1000.

    Returns:
        The (T,) float64 betas.

    Examples:
        >>> b = make_betas("linear", 1000)
        >>> round(float(b[0]), 6), round(float(b[-1]), 6)
        (0.0001, 0.02)
        >>> bool((make_betas("cosine", 50) <= 0.999).all())
        True
    """
    if steps < 2:
        raise ConfigError(f"diffusion.steps: {steps} must be >= 2")
    if name == "linear":
        scale = 1000.0 / steps
        b = torch.linspace(beta_start * scale, beta_end * scale, steps, dtype=torch.float64)
        return b.clamp(max=0.999)  # T < ~50 would scale β past 1 (ᾱ < 0: NaN in √ᾱ)
    if name == "cosine":
        s = 0.008
        t = torch.arange(steps + 1, dtype=torch.float64) / steps
        f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
        abar = f / f[0]
        return (1 - abar[1:] / abar[:-1]).clamp(max=0.999)
    raise ConfigError(f"diffusion.schedule: unknown schedule {name!r}; choose {', '.join(SCHEDULES)}")


class NoiseSchedule:
    """The tables of one schedule and the forward/posterior formulas that use them.

    Args:
        name: ``linear`` or ``cosine`` (see :func:`make_betas`).
        steps: T.

    Examples:
        >>> sch = NoiseSchedule("linear", 100)
        >>> x0 = torch.zeros(2, 1, 4, 4)
        >>> xt = sch.q_sample(x0, torch.tensor([0, 99]), torch.ones_like(x0))
        >>> [round(float(v), 4) for v in xt[:, 0, 0, 0]] == [round(float(sch.sqrt_1m_abar[0]), 4),
        ...                                                     round(float(sch.sqrt_1m_abar[99]), 4)]
        True
    """

    def __init__(self, name: str = "linear", steps: int = 1000) -> None:
        self.name = name
        self.steps = int(steps)
        b = make_betas(name, steps)
        self.betas = b
        self.alphas = 1.0 - b
        self.abar = torch.cumprod(self.alphas, 0)
        self.abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), self.abar[:-1]])
        self.sqrt_abar = self.abar.sqrt()
        self.sqrt_1m_abar = (1.0 - self.abar).sqrt()
        # posterior q(x_{t-1} | x_t, x_0) = N(c0·x_0 + ct·x_t, β̃_t), β̃_t = β_t(1−ᾱ_{t−1})/(1−ᾱ_t)
        self.post_var = b * (1.0 - self.abar_prev) / (1.0 - self.abar)
        self.post_c0 = b * self.abar_prev.sqrt() / (1.0 - self.abar)
        self.post_ct = (1.0 - self.abar_prev) * self.alphas.sqrt() / (1.0 - self.abar)

    @staticmethod
    def _at(table: Tensor, t: Tensor, like: Tensor) -> Tensor:
        """``table[t]`` shaped (B, 1, 1, ...) to broadcast against ``like``."""
        v = table.to(like.device)[t.long()].to(like.dtype)
        return v.view(-1, *([1] * (like.dim() - 1)))

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """x_t = √ᾱ_t · x_0 + √(1 − ᾱ_t) · ε, a draw of q(x_t | x_0) (Ho et al. eq. 4).

        Args:
            x0: clean images (B, ...).
            t: (B,) 0-based timesteps.
            noise: ε ~ N(0, I), same shape as ``x0``.

        Returns:
            x_t.
        """
        return self._at(self.sqrt_abar, t, x0) * x0 + self._at(self.sqrt_1m_abar, t, x0) * noise

    def predict_x0(self, xt: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        """x̂_0 = (x_t − √(1−ᾱ_t) ε̂) / √ᾱ_t: q_sample inverted for a predicted ε."""
        return (xt - self._at(self.sqrt_1m_abar, t, xt) * eps) / self._at(self.sqrt_abar, t, xt)

    def posterior(self, x0: Tensor, xt: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and variance of q(x_{t−1} | x_t, x_0) (Ho et al. eq. 6–7).

        Args:
            x0: (predicted) clean images.
            xt: the noisy images at ``t``.
            t: (B,) timesteps.

        Returns:
            ``(mean, variance)``; the variance is (B, 1, ...) and 0 at t = 0.
        """
        mean = self._at(self.post_c0, t, xt) * x0 + self._at(self.post_ct, t, xt) * xt
        return mean, self._at(self.post_var, t, xt)
