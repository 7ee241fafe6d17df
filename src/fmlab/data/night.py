"""A documented, seeded "night" degradation and the photometric jitter it is compared with.

Why: Dark Side augmentation (Mohwald et al., ICCV 2023) needs a scarce domain that differs from
the plentiful one the way night photos differ from day photos. We have no night photos, so the
scarce domain is a *synthetic* one made from day images by :func:`degrade_night`, applied in this
order to ``x`` in ``[0, 1]``::

    x ← x ** gamma                      darkening (shadows crushed more than highlights)
    x ← gain · x                        under-exposure
    x ← m + contrast · (x − m)          low contrast around the image mean m
    x ← tint[c] · x                     per-channel colour cast (bluish street-light night)
    x ← clip(x + sigma · N(0, 1), 0, 1) sensor noise, independent per pixel and channel

``gamma``, ``gain``, ``contrast`` and ``sigma`` are drawn per image from uniform ranges
(:class:`NightSpec`). Every draw — parameters and noise — comes from
``numpy.random.default_rng([seed, image_id])``, so an image's night version depends only on
(seed, its id, the spec), never on which batch it is in or on global random state.

:class:`PhotometricJitter` is the *baseline* augmentation of the study (brightness, contrast and
saturation jitter plus mild Gaussian noise, drawn from a ``torch.Generator``): generic photometric
robustness without any knowledge of the night domain.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from fmlab.data.augment import _uniform
from fmlab.data.color import ColorJitter
from fmlab.utils.validation import check

__all__ = ["GaussianNoise", "NightSpec", "PhotometricJitter", "degrade_night"]


def _check_range(name: str, lo_hi: Sequence[float], low: float, high: float | None = None) -> None:
    ok = len(lo_hi) == 2 and low <= lo_hi[0] <= lo_hi[1] and (high is None or lo_hi[1] <= high)
    bound = f"[{low}, {high}]" if high is not None else f">= {low}"
    check(ok, name, list(lo_hi), f"must be [lo, hi] with lo <= hi, both {bound}")


@dataclass
class NightSpec:
    """Ranges of the per-image night parameters (uniform draws) and the fixed colour cast."""

    gamma: tuple[float, float] = (1.8, 2.6)
    gain: tuple[float, float] = (0.35, 0.6)
    contrast: tuple[float, float] = (0.5, 0.8)
    noise: tuple[float, float] = (0.02, 0.05)
    tint: tuple[float, float, float] = (0.85, 0.9, 1.1)   # RGB gains

    def validate(self, prefix: str = "night") -> None:
        _check_range(f"{prefix}.gamma", self.gamma, 0.1)
        _check_range(f"{prefix}.gain", self.gain, 0.0, 1.0)
        _check_range(f"{prefix}.contrast", self.contrast, 0.0, 1.0)
        _check_range(f"{prefix}.noise", self.noise, 0.0, 0.5)
        check(len(self.tint) == 3 and all(0 <= t <= 2 for t in self.tint), f"{prefix}.tint",
              list(self.tint), "must be three RGB gains in [0, 2]")


def _night_one(x: np.ndarray, rng: np.random.Generator, spec: NightSpec) -> np.ndarray:
    """One float HWC image in [0, 1] → its night version (see the module docstring)."""
    gamma, gain, contrast, sigma = (rng.uniform(*r) for r in
                                    (spec.gamma, spec.gain, spec.contrast, spec.noise))
    y = gain * x ** gamma
    y = y.mean() + contrast * (y - y.mean())
    if y.shape[-1] == 3:
        y = y * np.asarray(spec.tint, dtype=np.float64)
    y = y + sigma * rng.standard_normal(y.shape)
    return np.clip(y, 0.0, 1.0)


def degrade_night(images: np.ndarray, ids: Sequence[int] | np.ndarray, seed: int,
                  spec: NightSpec | None = None) -> np.ndarray:
    """The night versions of uint8 images, deterministic per (seed, id).

    Args:
        images: uint8 ``(N, H, W)`` or ``(N, H, W, C)``.
        ids: one non-negative integer per image (e.g. its row in the split); it keys the draws.
        seed: the degradation seed (a different seed gives a different night of the same image).
        spec: parameter ranges (default :class:`NightSpec`).

    Returns:
        uint8 array of the same shape.

    Examples:
        >>> x = np.full((2, 4, 4, 3), 200, np.uint8)
        >>> a = degrade_night(x, [0, 1], seed=0)
        >>> bool((a[1:] == degrade_night(x[1:], [1], seed=0)).all()), bool(a.mean() < 80)
        (True, True)
    """
    spec = spec or NightSpec()
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    if len(ids) != len(images):
        raise ValueError(f"degrade_night: {len(ids)} ids for {len(images)} images")
    if ids.size and ids.min() < 0:
        raise ValueError("degrade_night: ids must be >= 0")
    out = np.empty_like(images)
    for k, (img, i) in enumerate(zip(images, ids)):
        rng = np.random.default_rng([int(seed), int(i)])
        y = _night_one(img.astype(np.float64) / 255.0, rng, spec)
        out[k] = np.round(y * 255.0).astype(np.uint8)
    return out


class GaussianNoise:
    """Additive pixel noise with a per-sample sigma ~ U[0, sigma], clipped to [0, 1].

    Draws the sigmas and a full-size noise tensor every call (same randomness whatever the data).
    """

    def __init__(self, sigma: float = 0.03) -> None:
        if sigma < 0:
            raise ValueError(f"GaussianNoise: sigma must be >= 0, got {sigma}")
        self.sigma = float(sigma)

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        s = _uniform(0.0, self.sigma, x.shape[0], generator, x.device).view(-1, 1, 1, 1)
        noise = torch.randn(x.shape, generator=generator, device=generator.device).to(x.device)
        return (x + s * noise).clamp(0.0, 1.0)

    def __repr__(self) -> str:
        return f"GaussianNoise(sigma={self.sigma})"


class PhotometricJitter:
    """The baseline augmentation: colour jitter (fixed order) then mild Gaussian noise.

    Args:
        brightness, contrast, saturation: :class:`~fmlab.data.color.ColorJitter` strengths
            (factor ~ U[1 - s, 1 + s]).
        noise: maximum noise sigma (per-sample sigma ~ U[0, noise]).
    """

    def __init__(self, brightness: float = 0.4, contrast: float = 0.4, saturation: float = 0.4,
                 noise: float = 0.03) -> None:
        self.jitter = ColorJitter(brightness, contrast, saturation, 0.0, random_order=False)
        self.noise = GaussianNoise(noise)

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """Float ``(B, C, H, W)`` in [0, 1] → jittered batch of the same shape."""
        return self.noise(self.jitter(x, generator), generator)

    def __repr__(self) -> str:
        return f"PhotometricJitter({self.jitter!r}, {self.noise!r})"
