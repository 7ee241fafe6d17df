"""Batched image augmentations that run on the training device.

Why batched: per-sample PIL/torchvision pipelines spend most of their time in Python per image and
in worker processes. Here every op draws its random parameters for the whole batch at once (from a
``torch.Generator``) and applies them with a handful of tensor kernels, so a batch of 512 CIFAR
images costs about as much as a few images per-sample would.

Conventions
- Every op takes ``x``: float ``(B, C, H, W)`` in ``[0, 1]`` and a ``torch.Generator`` and returns
  a new batch; ``Normalize`` is the last op and leaves ``[0, 1]``.
- Random numbers are drawn on the generator's device and moved to ``x``'s device, and every op
  draws the same amount of randomness whatever its probability or the data: the same seed gives
  the same output on CPU, whatever device the generator is for.
- ``p`` is a per-sample probability: each image independently gets the op or not.
- Colour jitter applies brightness, contrast, saturation and hue in a random order drawn per
  sample (torchvision's behaviour); ``random_order=False`` uses that fixed order instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from fmlab.errors import ConfigError, DataError

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "BatchTransform",
    "ColorJitter",
    "Compose",
    "GaussianBlur",
    "Normalize",
    "RandomCrop",
    "RandomGrayscale",
    "RandomHorizontalFlip",
    "RandomOp",
    "RandomResizedCrop",
    "Resize",
    "Solarize",
    "adjust_hue",
    "dino_views",
    "hsv_to_rgb",
    "mae_view",
    "rgb_to_hsv",
    "simclr_view",
    "supervised_view",
    "to_float_images",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601-2, as PIL and torchvision use for grey conversion


# ----------------------------------------------------------------------------- helpers


def _rand(n: int | tuple[int, ...], generator: torch.Generator, device: torch.device) -> Tensor:
    """Uniform [0, 1) numbers drawn on the generator's device, returned on ``device``."""
    shape = (n,) if isinstance(n, int) else n
    return torch.rand(shape, generator=generator, device=generator.device).to(device)


def _uniform(lo: float, hi: float, n: int, generator: torch.Generator,
             device: torch.device) -> Tensor:
    return lo + (hi - lo) * _rand(n, generator, device)


def _pair(size: int | Sequence[int], name: str) -> tuple[int, int]:
    if isinstance(size, int):
        size = (size, size)
    if len(size) != 2 or min(size) <= 0:
        raise ConfigError(f"{name} must be a positive int or (height, width), got {size!r}")
    return int(size[0]), int(size[1])


def _grey(x: Tensor) -> Tensor:
    """Luma of an RGB batch as (B, 1, H, W); a single-channel batch is returned as is."""
    if x.shape[1] == 1:
        return x
    r, g, b = x.unbind(1)
    return (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b).unsqueeze(1)


def to_float_images(images: Any, channels: int | None = None,
                    device: torch.device | str | None = None) -> Tensor:
    """uint8 ``(B, H, W)`` or ``(B, H, W, C)`` (numpy or torch) -> float ``(B, C, H, W)`` in [0, 1].

    ``channels`` converts grey to RGB (repeat) or RGB to grey (luma) so one pipeline serves MNIST
    and CIFAR backbones alike.
    """
    x = torch.as_tensor(images)
    if device is not None:
        x = x.to(device)
    if x.dtype != torch.uint8:
        raise DataError(f"images must be uint8 (B,H,W) or (B,H,W,C), got dtype {x.dtype}")
    if x.ndim == 3:
        x = x.unsqueeze(-1)
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise DataError(f"images must be uint8 (B,H,W) or (B,H,W,C) with C in (1, 3), "
                        f"got shape {tuple(x.shape)}")
    x = x.permute(0, 3, 1, 2).float().div_(255.0).contiguous()
    if channels is not None and channels != x.shape[1]:
        if channels == 3 and x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1).contiguous()
        elif channels == 1 and x.shape[1] == 3:
            x = _grey(x)
        else:
            raise ConfigError(f"channels must be 1 or 3, got {channels}")
    return x


# ----------------------------------------------------------------------------- base classes


class RandomOp:
    """An op applied to each sample with probability ``p``.

    Subclasses implement ``sample(batch_size, generator, device) -> dict[str, Tensor]`` (per-sample
    parameters, first dim = batch) and ``apply(x, params) -> x``. The base draws the parameters and
    the Bernoulli mask for the whole batch, then runs ``apply`` only on the selected rows.
    """

    p: float = 1.0

    def _check_p(self, p: float) -> float:
        if not 0.0 <= p <= 1.0:
            raise ConfigError(f"{type(self).__name__}: p must be in [0, 1], got {p}")
        return float(p)

    def sample(self, batch_size: int, generator: torch.Generator,
               device: torch.device) -> dict[str, Tensor]:
        return {}

    def apply(self, x: Tensor, params: dict[str, Tensor]) -> Tensor:
        raise NotImplementedError

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        b = x.shape[0]
        params = self.sample(b, generator, x.device)
        chosen = _rand(b, generator, x.device) < self.p
        if self.p >= 1.0 or bool(chosen.all()):
            return self.apply(x, params)
        if not bool(chosen.any()):
            return x
        idx = chosen.nonzero().squeeze(1)
        out = x.clone()
        out[idx] = self.apply(x[idx], {k: v[idx] for k, v in params.items()})
        return out

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({fields})"


class Compose:
    """Apply ops in sequence, all driven by one generator."""

    def __init__(self, ops: Sequence[Callable[[Tensor, torch.Generator], Tensor]]) -> None:
        self.ops = list(ops)

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        for op in self.ops:
            x = op(x, generator)
        return x

    def __repr__(self) -> str:
        inner = ",\n  ".join(repr(op) for op in self.ops)
        return f"Compose([\n  {inner}\n])"


# ----------------------------------------------------------------------------- geometry


class RandomResizedCrop:
    """Per-sample random boxes (area fraction in ``scale``, aspect ratio in ``ratio``), resized to
    ``size`` with one batched ``torchvision.ops.roi_align`` call.

    Boxes follow torchvision's sampler: up to ``attempts`` tries of (area, log-ratio) per sample,
    integer box sides and offsets, and a centre crop clamped to ``ratio`` when every try fails.
    ``roi_align`` averages ``ceil(box/size)`` bilinear samples per output pixel, so shrinking a
    large box is antialiased and an identity box reproduces the input exactly.
    """

    def __init__(self, size: int | Sequence[int], scale: tuple[float, float] = (0.08, 1.0),
                 ratio: tuple[float, float] = (3 / 4, 4 / 3), attempts: int = 10) -> None:
        self.size = _pair(size, "RandomResizedCrop size")
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ConfigError(f"RandomResizedCrop scale must satisfy 0 < lo <= hi <= 1, "
                              f"got {scale!r}")
        if not 0 < ratio[0] <= ratio[1]:
            raise ConfigError(f"RandomResizedCrop ratio must satisfy 0 < lo <= hi, got {ratio!r}")
        self.scale = (float(scale[0]), float(scale[1]))
        self.ratio = (float(ratio[0]), float(ratio[1]))
        self.attempts = int(attempts)

    def sample_boxes(self, batch_size: int, height: int, width: int,
                     generator: torch.Generator, device: torch.device | str = "cpu") -> Tensor:
        """Boxes ``(B, 4)`` as float ``x0, y0, x1, y1`` pixel-edge coordinates (integer valued)."""
        device = torch.device(device)
        n, t = batch_size, self.attempts
        area = height * width
        u = _rand((n, t, 4), generator, device)
        target_area = area * (self.scale[0] + (self.scale[1] - self.scale[0]) * u[..., 0])
        log_lo, log_hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        aspect = torch.exp(log_lo + (log_hi - log_lo) * u[..., 1])
        w = torch.round(torch.sqrt(target_area * aspect))
        h = torch.round(torch.sqrt(target_area / aspect))
        ok = (w > 0) & (h > 0) & (w <= width) & (h <= height)
        # offsets uniform over the valid integer range, as torch.randint(0, H - h + 1) would give
        y0 = torch.floor(u[..., 2] * (height - h + 1)).clamp(min=0)
        x0 = torch.floor(u[..., 3] * (width - w + 1)).clamp(min=0)
        first = torch.where(ok.any(1), ok.float().argmax(1), torch.full_like(ok[:, 0], -1,
                                                                              dtype=torch.long))
        pick = first.clamp(min=0).unsqueeze(1)
        w, h = w.gather(1, pick).squeeze(1), h.gather(1, pick).squeeze(1)
        x0, y0 = x0.gather(1, pick).squeeze(1), y0.gather(1, pick).squeeze(1)
        # fallback: centre crop with the aspect ratio clamped to the allowed range
        fw, fh = self._fallback(height, width)
        fail = first < 0
        w = torch.where(fail, torch.full_like(w, fw), w)
        h = torch.where(fail, torch.full_like(h, fh), h)
        x0 = torch.where(fail, torch.full_like(x0, (width - fw) // 2), x0)
        y0 = torch.where(fail, torch.full_like(y0, (height - fh) // 2), y0)
        return torch.stack([x0, y0, x0 + w, y0 + h], dim=1)

    def _fallback(self, height: int, width: int) -> tuple[int, int]:
        in_ratio = width / height
        if in_ratio < self.ratio[0]:
            w = width
            h = round(w / self.ratio[0])
        elif in_ratio > self.ratio[1]:
            h = height
            w = round(h * self.ratio[1])
        else:
            w, h = width, height
        return w, h

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        boxes = self.sample_boxes(x.shape[0], x.shape[2], x.shape[3], generator, x.device)
        return crop_and_resize(x, boxes, self.size)

    def __repr__(self) -> str:
        return f"RandomResizedCrop(size={self.size}, scale={self.scale}, ratio={self.ratio})"


def crop_and_resize(x: Tensor, boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """Crop ``boxes`` (B, 4: x0, y0, x1, y1 pixel edges) out of ``x`` and resize each to ``size``.

    Output pixel (i, j) averages bilinear samples at the centres of its bin in the box (ROI-align
    semantics, ``ceil(box / size)`` samples per side). When no box is larger than the output, that
    is one sample per pixel, and ``grid_sample`` computes exactly the same values about 2-3x
    faster on CPU; otherwise ``torchvision.ops.roi_align`` does the antialiased average.
    """
    oh, ow = size
    bw, bh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    if bool((bw <= ow).all()) and bool((bh <= oh).all()):
        return _grid_crop(x, boxes, size)
    from torchvision.ops import roi_align

    idx = torch.arange(x.shape[0], device=x.device, dtype=x.dtype).unsqueeze(1)
    rois = torch.cat([idx, boxes.to(x.dtype)], dim=1)
    out = roi_align(x, rois, output_size=size, spatial_scale=1.0, sampling_ratio=-1,
                    aligned=True)
    return out.clamp_(0.0, 1.0)


def _grid_crop(x: Tensor, boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """One bilinear sample per output pixel at its bin centre (edges clamped, as roi_align)."""
    b, _, h, w = x.shape
    oh, ow = size
    boxes = boxes.to(device=x.device, dtype=x.dtype)
    x0, y0, x1, y1 = boxes.unbind(1)
    fx = (torch.arange(ow, device=x.device, dtype=x.dtype) + 0.5) / ow
    fy = (torch.arange(oh, device=x.device, dtype=x.dtype) + 0.5) / oh
    gx = (x0[:, None] + fx[None] * (x1 - x0)[:, None]) * (2.0 / w) - 1.0  # (B, ow)
    gy = (y0[:, None] + fy[None] * (y1 - y0)[:, None]) * (2.0 / h) - 1.0  # (B, oh)
    grid = torch.stack([gx[:, None, :].expand(b, oh, ow), gy[:, :, None].expand(b, oh, ow)], -1)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.clamp_(0.0, 1.0)


class Resize:
    """Deterministic bilinear (antialiased) resize, e.g. for evaluation views."""

    def __init__(self, size: int | Sequence[int]) -> None:
        self.size = _pair(size, "Resize size")

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        if tuple(x.shape[-2:]) == self.size:
            return x
        return F.interpolate(x, size=self.size, mode="bilinear", align_corners=False,
                             antialias=True).clamp_(0.0, 1.0)


class RandomCrop:
    """Zero-pad by ``padding`` then take a random ``size`` crop per sample (the CIFAR recipe)."""

    def __init__(self, size: int | Sequence[int], padding: int = 4) -> None:
        self.size = _pair(size, "RandomCrop size")
        if padding < 0:
            raise ConfigError(f"RandomCrop padding must be >= 0, got {padding}")
        self.padding = int(padding)

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        b, c = x.shape[:2]
        if self.padding:
            x = F.pad(x, [self.padding] * 4)
        th, tw = self.size
        hp, wp = x.shape[-2:]
        if th > hp or tw > wp:
            raise DataError(f"RandomCrop size {self.size} is larger than the padded image "
                            f"{(hp, wp)}")
        u = _rand((b, 2), generator, x.device)
        y0 = torch.floor(u[:, 0] * (hp - th + 1)).long()
        x0 = torch.floor(u[:, 1] * (wp - tw + 1)).long()
        rows = (y0[:, None] + torch.arange(th, device=x.device))[:, None, :, None]
        cols = (x0[:, None] + torch.arange(tw, device=x.device))[:, None, None, :]
        bi = torch.arange(b, device=x.device)[:, None, None, None]
        ci = torch.arange(c, device=x.device)[None, :, None, None]
        return x[bi, ci, rows, cols]


class RandomHorizontalFlip(RandomOp):
    def __init__(self, p: float = 0.5) -> None:
        self.p = self._check_p(p)

    def apply(self, x: Tensor, params: dict[str, Tensor]) -> Tensor:
        return x.flip(-1)


# ----------------------------------------------------------------------------- colour


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


class Normalize:
    """(x - mean) / std per channel; the last op of a pipeline.

    Grey images with 3-channel statistics are normalised with the luma-weighted mean and std, so
    the default ImageNet statistics work for a 1-channel model; any other mismatch is an error.
    """

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD) -> None:
        if len(mean) != len(std) or any(s <= 0 for s in std):
            raise ConfigError(f"Normalize needs mean and std of one length and std > 0, "
                              f"got mean={tuple(mean)} std={tuple(std)}")
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        c = x.shape[1]
        mean, std = self.mean, self.std
        if len(mean) != c:
            if len(mean) == 3 and c == 1:  # grey image with RGB statistics: use their luma
                mean = (sum(w * m for w, m in zip(_LUMA, mean)),)
                std = (sum(w * s for w, s in zip(_LUMA, std)),)
            else:
                raise DataError(f"Normalize has {len(mean)} channel statistics but the images "
                                f"have {c} channels")
        m = torch.tensor(mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        s = torch.tensor(std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        return (x - m) / s

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean}, std={self.std})"


# ----------------------------------------------------------------------------- batch transforms

ViewSpec = Compose | Sequence[Compose]
MaskFn = Callable[[int, torch.Generator, torch.device], Mapping[str, Tensor]]


class BatchTransform:
    """Turn ``{"images": uint8 (B,H,W[,C]), ...}`` into what an objective consumes.

    ``outputs`` maps an output key to one pipeline (-> a tensor) or a list of pipelines (-> a list
    of views). ``masks`` are extra generators (e.g. MAE patch masks) called as
    ``fn(batch_size, generator, device)`` returning a dict of tensors merged into the batch.
    Every other key of the input (labels, index) is passed through untouched. The output is on the
    images' device.
    """

    def __init__(self, outputs: Mapping[str, ViewSpec], channels: int | None = None,
                 masks: Sequence[MaskFn] = ()) -> None:
        if not outputs:
            raise ConfigError("BatchTransform needs at least one output")
        self.outputs = dict(outputs)
        self.channels = channels
        self.masks = list(masks)

    def __call__(self, batch: Mapping[str, Any], generator: torch.Generator) -> dict[str, Any]:
        if "images" not in batch:
            raise DataError(f"batch has no 'images' key (keys: {sorted(batch)})")
        x = to_float_images(batch["images"], channels=self.channels)
        out: dict[str, Any] = {k: v for k, v in batch.items() if k != "images"}
        for key, spec in self.outputs.items():
            if isinstance(spec, Compose):
                out[key] = spec(x, generator)
            else:
                out[key] = [view(x, generator) for view in spec]
        for fn in self.masks:
            out.update(fn(x.shape[0], generator, x.device))
        return out

    def __repr__(self) -> str:
        return f"BatchTransform(outputs={self.outputs!r}, channels={self.channels})"


# ----------------------------------------------------------------------------- recipes


def simclr_view(size: int, scale: tuple[float, float] = (0.08, 1.0), jitter: float = 0.5,
                jitter_p: float = 0.8, grey_p: float = 0.2, blur_p: float = 0.0,
                mean: Sequence[float] = IMAGENET_MEAN,
                std: Sequence[float] = IMAGENET_STD) -> Compose:
    """SimCLR's view: RRC, flip, colour jitter (0.8s, 0.8s, 0.8s, 0.2s) with p, grey, blur.

    ``jitter`` is SimCLR's colour strength s (0.5 for CIFAR, giving (0.4, 0.4, 0.4, 0.1)); blur is
    off by default because SimCLR drops it for 32 px images.
    """
    ops: list[Any] = [
        RandomResizedCrop(size, scale=scale),
        RandomHorizontalFlip(0.5),
        ColorJitter(0.8 * jitter, 0.8 * jitter, 0.8 * jitter, 0.2 * jitter, p=jitter_p),
        RandomGrayscale(grey_p),
    ]
    if blur_p > 0:
        ops.append(GaussianBlur(None, (0.1, 2.0), p=blur_p))
    ops.append(Normalize(mean, std))
    return Compose(ops)


def dino_views(global_size: int, local_size: int, n_local: int,
               global_scale: tuple[float, float] = (0.4, 1.0),
               local_scale: tuple[float, float] = (0.05, 0.4), blur: bool = True,
               mean: Sequence[float] = IMAGENET_MEAN,
               std: Sequence[float] = IMAGENET_STD) -> dict[str, list[Compose]]:
    """DINO's multi-crop: two global views (blur p=1.0; blur p=0.1 + solarise p=0.2) and
    ``n_local`` local views (blur p=0.5), all with flip, jitter (0.4, 0.4, 0.2, 0.1) p=0.8 and
    grey p=0.2. ``blur=False`` drops blur (tiny images)."""

    def view(size: int, scale: tuple[float, float], blur_p: float, sol_p: float) -> Compose:
        ops: list[Any] = [RandomResizedCrop(size, scale=scale), RandomHorizontalFlip(0.5),
                          ColorJitter(0.4, 0.4, 0.2, 0.1, p=0.8), RandomGrayscale(0.2)]
        if blur and blur_p > 0:
            ops.append(GaussianBlur(None, (0.1, 2.0), p=blur_p))
        if sol_p > 0:
            ops.append(Solarize(0.5, p=sol_p))
        ops.append(Normalize(mean, std))
        return Compose(ops)

    return {
        "global_views": [view(global_size, global_scale, 1.0, 0.0),
                         view(global_size, global_scale, 0.1, 0.2)],
        "local_views": [view(local_size, local_scale, 0.5, 0.0) for _ in range(n_local)],
    }


def mae_view(size: int, scale: tuple[float, float] = (0.2, 1.0),
             mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
             ) -> Compose:
    """MAE's pre-training view: RRC scale (0.2, 1) + flip + normalise."""
    return Compose([RandomResizedCrop(size, scale=scale), RandomHorizontalFlip(0.5),
                    Normalize(mean, std)])


def supervised_view(size: int, padding: int | None = 4, scale: tuple[float, float] = (0.08, 1.0),
                    mean: Sequence[float] = IMAGENET_MEAN,
                    std: Sequence[float] = IMAGENET_STD) -> Compose:
    """Supervised training view: pad-and-crop + flip (CIFAR recipe) when ``padding`` is given,
    otherwise RRC + flip (ImageNet recipe)."""
    crop: Any = (RandomCrop(size, padding) if padding is not None
                 else RandomResizedCrop(size, scale=scale))
    return Compose([crop, RandomHorizontalFlip(0.5), Normalize(mean, std)])


def supervised_transform(image_size: int = 32, padding: int | None = 4,
                         mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                         channels: int | None = None) -> BatchTransform:
    """{"images": uint8} -> {"images": one supervised view}: pad-crop + flip (RRC + flip when
    ``padding=None``). Shared by the supervised, LOOK and distillation objectives."""
    view = supervised_view(image_size, padding, mean=mean or IMAGENET_MEAN, std=std or IMAGENET_STD)
    return BatchTransform({"images": view}, channels=channels)


def masked_transform(mask_fn, image_size: int = 32, patch_size: int = 4,
                     scale: tuple[float, float] = (0.2, 1.0), mean: Sequence[float] | None = None,
                     std: Sequence[float] | None = None, channels: int | None = None) -> BatchTransform:
    """One RRC + flip view plus a per-sample token mask from ``mask_fn(length)`` (MAE's
    visible/masked split, MP3's context subset)."""
    if image_size % patch_size:
        raise ConfigError(f"image_size {image_size} is not a multiple of patch_size {patch_size}")
    view = mae_view(image_size, scale, mean=mean or IMAGENET_MEAN, std=std or IMAGENET_STD)
    return BatchTransform({"images": view}, channels=channels,
                          masks=[mask_fn((image_size // patch_size) ** 2)])

