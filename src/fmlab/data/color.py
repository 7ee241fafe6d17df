"""Batched colour augmentations: jitter (brightness, contrast, saturation, hue), greyscale, blur,
solarisation, and the RGB <-> HSV conversions they use.

Same conventions as :mod:`fmlab.data.augment` (float ``(B, C, H, W)`` in ``[0, 1]``, parameters
drawn per batch from a ``torch.Generator``, the same randomness whatever ``p``); every name is also
importable from ``fmlab.data.augment``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from fmlab.data.augment import RandomOp, _grey, _rand, _uniform
from fmlab.errors import ConfigError, DataError

__all__ = ["ColorJitter", "GaussianBlur", "RandomGrayscale", "Solarize", "adjust_hue", "hsv_to_rgb",
           "rgb_to_hsv"]

def _hue_max_chroma(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Hue in sextants (in [-1, 5), not yet wrapped), max and chroma (max - min), per pixel."""
    r, g, b = x.unbind(1)
    maxc = torch.maximum(torch.maximum(r, g), b)
    chroma = maxc - torch.minimum(torch.minimum(r, g), b)
    inv = 1.0 / chroma.clamp_min(1e-12)  # grey pixels: every difference below is 0 -> hue 0
    is_r = maxc == r
    is_g = (maxc == g) & ~is_r
    h = torch.where(is_r, (g - b) * inv,
                    torch.where(is_g, (b - r) * inv + 2.0, (r - g) * inv + 4.0))
    return h, maxc, chroma


def _from_hue_max_chroma(h: Tensor, maxc: Tensor, chroma: Tensor) -> Tensor:
    """Inverse of ``_hue_max_chroma`` for h in [0, 6): channel = max - chroma * (1 - pure), with
    the pure hue colour R = clamp(|h - 3| - 1), G = clamp(2 - |h - 2|), B = clamp(2 - |h - 4|)
    (the closed form of the HSV sextant table, without a modulo)."""
    out = torch.empty(h.shape[0], 3, *h.shape[1:], dtype=h.dtype, device=h.device)
    out[:, 0] = maxc - chroma * (2.0 - (h - 3.0).abs()).clamp_(0.0, 1.0)
    out[:, 1] = maxc - chroma * ((h - 2.0).abs() - 1.0).clamp_(0.0, 1.0)
    out[:, 2] = maxc - chroma * ((h - 4.0).abs() - 1.0).clamp_(0.0, 1.0)
    return out


def rgb_to_hsv(x: Tensor) -> Tensor:
    """RGB (B, 3, H, W) in [0, 1] -> HSV with hue in [0, 1)."""
    h, v, chroma = _hue_max_chroma(x)
    s = chroma / torch.where(v > 0, v, torch.ones_like(v))
    return torch.stack([torch.remainder(h, 6.0) / 6.0, s, v], dim=1)


def hsv_to_rgb(x: Tensor) -> Tensor:
    """HSV (B, 3, H, W), hue in [0, 1) -> RGB in [0, 1]."""
    h, s, v = x.unbind(1)
    return _from_hue_max_chroma(h * 6.0, v, v * s)


def adjust_hue(x: Tensor, shift: Tensor) -> Tensor:
    """Rotate the HSV hue of each image by ``shift`` (B,) turns; saturation and value are kept.

    Works on (hue, max, chroma) directly: V = max and S * V = chroma, so no division by V.
    """
    h, maxc, chroma = _hue_max_chroma(x)
    h = torch.remainder(h + 6.0 * shift.view(-1, 1, 1), 6.0)
    return _from_hue_max_chroma(h, maxc, chroma)


class ColorJitter(RandomOp):
    """Brightness, contrast, saturation and hue jitter with per-sample factors.

    Factors: brightness, contrast, saturation ~ U[max(0, 1 - s), 1 + s]; hue shift ~ U[-h, h]
    (fraction of the hue circle, h <= 0.5). Blends follow torchvision: brightness scales,
    contrast blends with the image's mean luma, saturation with the per-pixel luma. The four
    are applied in a random order drawn per sample (``random_order=True``, torchvision's
    behaviour) or always as brightness, contrast, saturation, hue.
    """

    def __init__(self, brightness: float = 0.0, contrast: float = 0.0, saturation: float = 0.0,
                 hue: float = 0.0, p: float = 1.0, random_order: bool = True) -> None:
        for name, val in (("brightness", brightness), ("contrast", contrast),
                          ("saturation", saturation)):
            if val < 0:
                raise ConfigError(f"ColorJitter {name} must be >= 0, got {val}")
        if not 0.0 <= hue <= 0.5:
            raise ConfigError(f"ColorJitter hue must be in [0, 0.5], got {hue}")
        self.brightness, self.contrast = float(brightness), float(contrast)
        self.saturation, self.hue = float(saturation), float(hue)
        self.p = self._check_p(p)
        self.random_order = bool(random_order)

    def sample(self, batch_size: int, generator: torch.Generator,
               device: torch.device) -> dict[str, Tensor]:
        def factor(s: float) -> Tensor:
            return _uniform(max(0.0, 1.0 - s), 1.0 + s, batch_size, generator, device)

        params = {"b": factor(self.brightness), "c": factor(self.contrast),
                  "s": factor(self.saturation),
                  "h": _uniform(-self.hue, self.hue, batch_size, generator, device)}
        keys = _rand((batch_size, 4), generator, device)
        params["order"] = keys.argsort(1) if self.random_order else (
            torch.arange(4, device=device).expand(batch_size, 4))
        return params

    def _enabled(self) -> list[bool]:
        return [self.brightness > 0, self.contrast > 0, self.saturation > 0, self.hue > 0]

    @staticmethod
    def _one(op: int, x: Tensor, params: dict[str, Tensor]) -> Tensor:
        if op == 0:
            return (x * params["b"].view(-1, 1, 1, 1)).clamp_(0.0, 1.0)
        if op == 1:
            mean = _grey(x).mean(dim=(1, 2, 3), keepdim=True)
            f = params["c"].view(-1, 1, 1, 1)
            return (f * x + (1.0 - f) * mean).clamp_(0.0, 1.0)
        if x.shape[1] == 1:  # saturation and hue do nothing to grey images
            return x
        if op == 2:
            f = params["s"].view(-1, 1, 1, 1)
            return (f * x + (1.0 - f) * _grey(x)).clamp_(0.0, 1.0)
        return adjust_hue(x, params["h"])

    def apply(self, x: Tensor, params: dict[str, Tensor]) -> Tensor:
        """Jitter every row of ``x`` with its parameters (the per-sample order included)."""
        return self._run(x, params, torch.ones(x.shape[0], dtype=torch.bool, device=x.device))

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        b = x.shape[0]
        params = self.sample(b, generator, x.device)
        chosen = _rand(b, generator, x.device) < self.p
        return self._run(x, params, chosen)

    def _run(self, x: Tensor, params: dict[str, Tensor], chosen: Tensor) -> Tensor:
        """Rows are regrouped once per step so that each op runs on one contiguous slice.

        At step t every chosen row needs op ``order[row, t]`` (4 = skip: row not chosen, or the
        op has strength 0). Sorting rows by that key makes each op's rows a slice, so a step
        costs one gather plus four slice computations, whatever the mix of orders.
        """
        enabled = torch.tensor(self._enabled() + [False], device=x.device)
        order = params["order"]
        rows = torch.arange(x.shape[0], device=x.device)  # original row of each current row
        for step in range(4):
            key = torch.where(chosen[rows], order[rows, step], torch.full_like(rows, 4))
            key = torch.where(enabled[key], key, torch.full_like(key, 4))
            sort = torch.argsort(key, stable=True)
            key, rows, x = key[sort], rows[sort], x[sort]
            counts = torch.bincount(key, minlength=5).tolist()
            out = torch.empty_like(x)
            start = 0
            for op, count in enumerate(counts):
                if count:
                    sl = slice(start, start + count)
                    if op == 4:
                        out[sl] = x[sl]
                    else:
                        sub = {k: v[rows[sl]] for k, v in params.items() if k != "order"}
                        out[sl] = self._one(op, x[sl], sub)
                start += count
            x = out
        return x[torch.argsort(rows)]


class RandomGrayscale(RandomOp):
    """Replace RGB with its luma, repeated over the three channels."""

    def __init__(self, p: float = 0.2) -> None:
        self.p = self._check_p(p)

    def apply(self, x: Tensor, params: dict[str, Tensor]) -> Tensor:
        if x.shape[1] == 1:
            return x
        return _grey(x).expand(-1, x.shape[1], -1, -1).contiguous()


class GaussianBlur(RandomOp):
    """Separable Gaussian blur with a per-sample sigma ~ U[sigma]; reflect padding.

    ``kernel_size=None`` uses the odd size nearest 10 % of the image side (SimCLR's rule), at
    least 3.
    """

    def __init__(self, kernel_size: int | None = None, sigma: tuple[float, float] = (0.1, 2.0),
                 p: float = 0.5) -> None:
        if kernel_size is not None and (kernel_size < 1 or kernel_size % 2 == 0):
            raise ConfigError(f"GaussianBlur kernel_size must be odd and positive, "
                              f"got {kernel_size}")
        if not 0 < sigma[0] <= sigma[1]:
            raise ConfigError(f"GaussianBlur sigma must satisfy 0 < lo <= hi, got {sigma!r}")
        self.kernel_size, self.sigma = kernel_size, (float(sigma[0]), float(sigma[1]))
        self.p = self._check_p(p)

    def sample(self, batch_size: int, generator: torch.Generator,
               device: torch.device) -> dict[str, Tensor]:
        return {"sigma": _uniform(self.sigma[0], self.sigma[1], batch_size, generator, device)}

    def apply(self, x: Tensor, params: dict[str, Tensor]) -> Tensor:
        b, c, h, w = x.shape
        k = self.kernel_size or max(3, round(0.1 * min(h, w)) // 2 * 2 + 1)
        r = k // 2
        if r >= min(h, w):
            raise DataError(f"GaussianBlur kernel_size {k} is too large for images {h}x{w}")
        t = torch.arange(-r, r + 1, device=x.device, dtype=x.dtype)
        kern = torch.exp(-(t[None, :] ** 2) / (2.0 * params["sigma"].to(x.dtype)[:, None] ** 2))
        kern = kern / kern.sum(1, keepdim=True)  # (B, k)
        kern = kern.repeat_interleave(c, dim=0)  # (B*C, k)
        y = x.reshape(1, b * c, h, w)
        y = F.pad(y, (r, r, r, r), mode="reflect")
        y = F.conv2d(y, kern.view(b * c, 1, 1, k), groups=b * c)
        y = F.conv2d(y, kern.view(b * c, 1, k, 1), groups=b * c)
        return y.view(b, c, h, w)


class Solarize(RandomOp):
    """Invert pixels at or above ``threshold`` (in [0, 1] units)."""

    def __init__(self, threshold: float = 0.5, p: float = 0.2) -> None:
        self.threshold = float(threshold)
        self.p = self._check_p(p)

    def apply(self, x: Tensor, params: dict[str, Tensor]) -> Tensor:
        return torch.where(x >= self.threshold, 1.0 - x, x)
