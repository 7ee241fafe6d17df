"""Per-objective augmentation recipes built from the batched ops of :mod:`fmlab.data.augment`.

One function per training recipe (lightly keeps one transform per method too): SimCLR's view,
DINO's multi-crop, MAE's view, the supervised pad-crop/RRC view, the masked-token transform of
MAE/MP3, and :class:`TrainTransform`, the fine-tuning view of ``fmlab finetune``. Every name is
also importable from ``fmlab.data.augment``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from fmlab.data.augment import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    BatchTransform,
    Compose,
    Normalize,
    RandomCrop,
    RandomHorizontalFlip,
    RandomResizedCrop,
)
from fmlab.data.color import ColorJitter, GaussianBlur, RandomGrayscale, Solarize
from fmlab.errors import ConfigError

__all__ = ["TrainTransform", "dino_views", "mae_view", "masked_transform", "simclr_view",
           "supervised_transform", "supervised_view"]

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


class TrainTransform:
    """The fine-tuning view of ``fmlab finetune``: a uint8 batch goes through the backbone's own
    preprocessing, then pad-and-crop (pad = size/8) and horizontal flips.

    Why after normalisation: padding then fills with 0, the mean colour, and the whole view is a
    few batched kernels on the training device.

    Args:
        preprocess: the backbone's preprocessing (uint8 ``(B, H, W, C)`` -> float NCHW).
        augment: ``"crop_flip"``, ``"crop"`` or ``"none"``.

    Examples:
        >>> import torch
        >>> t = TrainTransform(lambda x: x.float().permute(0, 3, 1, 2), "crop_flip")
        >>> out = t({"images": torch.zeros(2, 8, 8, 3, dtype=torch.uint8)}, torch.Generator())
        >>> tuple(out["images"].shape)
        (2, 3, 8, 8)
    """

    def __init__(self, preprocess: Any, augment: str) -> None:
        self.preprocess, self.augment = preprocess, augment

    def __call__(self, batch: dict[str, Any], gen: torch.Generator) -> dict[str, Any]:
        """Return ``batch`` with its ``images`` replaced by the augmented float view.

        Args:
            batch: a batch with uint8 ``images``.
            gen: the generator every random draw comes from.

        Returns:
            A new dict; the other keys are passed through.
        """
        x = self.preprocess(batch["images"])
        if self.augment in ("crop", "crop_flip"):
            h, w = x.shape[-2:]
            x = RandomCrop((h, w), padding=max(1, h // 8))(x, gen)
        if self.augment == "crop_flip":
            x = RandomHorizontalFlip(0.5)(x, gen)
        return {**batch, "images": x}
