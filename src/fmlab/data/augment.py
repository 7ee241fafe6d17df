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

Layout: this module holds the shared helpers, the geometric ops, ``Normalize`` and
``BatchTransform``; the colour ops live in :mod:`fmlab.data.color` and the per-objective recipes
(``simclr_view``, ``dino_views``, ``mae_view``, ``supervised_transform``, ``masked_transform``,
``TrainTransform``) in :mod:`fmlab.data.recipes`. Both build on this module, and every name stays
importable from here (resolved lazily, so neither module imports the other at import time).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from fmlab.errors import ConfigError, DataError

# (the colour ops and recipes re-exported below are listed in their own modules' __all__)
__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "BatchTransform",
    "Compose",
    "Normalize",
    "RandomCrop",
    "RandomHorizontalFlip",
    "RandomOp",
    "RandomResizedCrop",
    "Resize",
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


# ----------------------------------------------------------------------------- re-exports

_COLOR = ("ColorJitter", "GaussianBlur", "RandomGrayscale", "Solarize", "adjust_hue", "hsv_to_rgb",
          "rgb_to_hsv")
_RECIPES = ("TrainTransform", "dino_views", "mae_view", "masked_transform", "simclr_view",
            "supervised_transform", "supervised_view")


def __getattr__(name: str) -> Any:
    """``fmlab.data.augment.<colour op or recipe>``: the names that moved to ``color``/``recipes``.

    Lazy (PEP 562) because those modules import this one; an eager import here would be a cycle.
    """
    if name in _COLOR or name in _RECIPES:
        import importlib

        module = importlib.import_module("fmlab.data.color" if name in _COLOR else "fmlab.data.recipes")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_COLOR) | set(_RECIPES))
