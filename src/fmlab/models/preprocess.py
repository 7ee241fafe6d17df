"""Preprocessing specs: how a backbone wants its pixels.

A spec turns a batch of uint8 images in the layout fmlab's data layer produces (``(N, H, W)`` grey or
``(N, H, W, C)`` with C in {1, 3}) into the float ``(N, C, h, w)`` tensor a backbone consumes. It
converts grey <-> RGB and resizes, so every backbone accepts every image dataset, and it is part of
the protocol recorded with every feature file and result (``to_dict``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F

from fmlab.errors import DataError

# ITU-R 601-2 luma, the weights PIL uses for convert("L").
_LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class PreprocessSpec:
    """Input size, channels, normalisation and resize rule of a backbone.

    ``resize``: ``"bilinear"`` / ``"bicubic"`` / ``"nearest"`` resize straight to ``input_size``
    (half-pixel centres, like PIL and ``F.interpolate(align_corners=False)``; antialiased when
    shrinking); ``"shorter_center_crop_<mode>"`` resizes the shorter side then centre-crops, as
    CLIP/timm evaluation transforms do. Images already at ``input_size`` are not touched.

    Args:
        input_size: ``(h, w)`` the backbone consumes.
        channels: 1 (grey) or 3 (RGB); other layouts are converted.
        mean, std: per-channel normalisation of pixels in [0, 1].
        resize: the resize rule (above).
        extra: free-form notes, not part of equality or :meth:`to_dict`.

    Examples:
        >>> spec = PreprocessSpec((4, 4), 1, (0.5,), (0.5,))
        >>> spec(torch.full((2, 8, 8, 3), 255, dtype=torch.uint8)).shape
        torch.Size([2, 1, 4, 4])
    """

    input_size: tuple[int, int]
    channels: int = 3
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    resize: str = "bilinear"
    extra: dict = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        d.pop("extra")
        return d

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.apply(images)

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``(N,H,W)`` / ``(N,H,W,C)`` → float32 ``(N, channels, h, w)``, normalised."""
        if not isinstance(images, torch.Tensor):
            images = torch.as_tensor(images)
        if images.dtype != torch.uint8:
            raise DataError(f"preprocess expects uint8 images, got dtype {images.dtype}")
        if images.ndim == 3:
            images = images.unsqueeze(-1)
        if images.ndim != 4 or images.shape[-1] not in (1, 3, 4):
            raise DataError(
                f"preprocess expects images of shape (N,H,W) or (N,H,W,C) with C in 1/3, got {tuple(images.shape)}"
            )
        if images.shape[1] < 1 or images.shape[2] < 1:
            raise DataError(f"preprocess got images of size {images.shape[1]}x{images.shape[2]}; height and "
                            "width must be >= 1")
        x = images.permute(0, 3, 1, 2).float().div_(255.0)
        x = self._convert_channels(x[:, :3] if x.shape[1] == 4 else x)
        x = self._resize(x)
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return (x - mean) / std

    def _convert_channels(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        if c == self.channels:
            return x
        if c == 1 and self.channels == 3:
            return x.expand(-1, 3, -1, -1)
        if c == 3 and self.channels == 1:
            w = torch.tensor(_LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
            return (x * w).sum(1, keepdim=True)
        raise DataError(f"cannot convert {c}-channel images to {self.channels} channels")

    def _resize(self, x: torch.Tensor) -> torch.Tensor:
        h, w = self.input_size
        if tuple(x.shape[-2:]) == (h, w):
            return x
        mode = self.resize
        if mode.startswith("shorter_center_crop_"):
            mode = mode.removeprefix("shorter_center_crop_")
            ih, iw = x.shape[-2:]
            scale = max(h / ih, w / iw)
            nh, nw = max(h, round(ih * scale)), max(w, round(iw * scale))
            x = _interp(x, (nh, nw), mode)
            top, left = (nh - h) // 2, (nw - w) // 2
            return x[..., top:top + h, left:left + w]
        if mode not in ("bilinear", "bicubic", "nearest"):
            raise DataError(f"unknown resize rule {self.resize!r}")
        return _interp(x, (h, w), mode)


def _interp(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    shrinking = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    if mode == "nearest":
        return F.interpolate(x, size=size, mode="nearest")
    out = F.interpolate(x, size=size, mode=mode, align_corners=False, antialias=shrinking)
    return out.clamp_(0.0, 1.0) if mode == "bicubic" else out


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
