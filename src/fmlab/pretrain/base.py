"""The objective contract shared by every pre-training method.

An objective is an ``nn.Module`` that owns its heads (and EMA copies); the engine calls
``loss, logs = objective(batch)`` and, when defined, ``on_train_start(max_steps)`` and
``on_after_optimizer_step(step, max_steps)``. ``encoder`` is the network whose weights are
exported: float NCHW preprocessed images -> (N, D) features. ``embed(images)`` is what the
engine's monitors call, on raw uint8 images: it preprocesses them with ``preprocess`` (the
``Backbone``'s spec when one was given, else ImageNet mean/std at the encoder's channels/size,
matching the default transforms) and encodes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from fmlab.errors import ConfigError, DataError


def resolve_encoder(encoder: nn.Module, feature_dim: int | None) -> tuple[nn.Module, int]:
    """Accept a plain feature extractor or the lead's ``Backbone`` and return (module, D).

    A ``Backbone`` (it has ``trunk`` and ``feature_dim``) contributes its trunk: that is the part
    mapping preprocessed images to features, whereas ``Backbone.__call__`` may return logits.
    """
    if hasattr(encoder, "trunk") and hasattr(encoder, "feature_dim"):
        dim = int(encoder.feature_dim)
        encoder = encoder.trunk
    else:
        dim = getattr(encoder, "feature_dim", None)
    if feature_dim is not None:
        if dim is not None and int(dim) != int(feature_dim):
            raise ConfigError(f"feature_dim={feature_dim} disagrees with the encoder's "
                              f"feature_dim={dim}")
        dim = feature_dim
    if dim is None:
        raise ConfigError(f"cannot tell the feature size of {type(encoder).__name__}; "
                          f"pass feature_dim=")
    return encoder, int(dim)


def require(batch: Mapping[str, Any], key: str, who: str) -> Any:
    """``batch[key]`` or a DataError naming the objective, the key and what the batch has."""
    if key not in batch:
        raise DataError(f"{who} needs batch[{key!r}]; batch has {sorted(batch)}")
    return batch[key]


def _in_channels(module: nn.Module) -> int | None:
    chans = getattr(module, "in_chans", None)
    if chans is not None:
        return int(chans)
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            return m.in_channels
    return None


class DefaultPreprocess:
    """uint8 (N,H,W[,C]) -> float NCHW: channels converted, resized if ``size``, normalised."""

    def __init__(self, channels: int | None = None, size: int | None = None,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> None:
        from fmlab.data import augment as A

        self.channels, self.size = channels, size
        self._resize = A.Resize(size) if size else None
        self._norm = A.Normalize(mean or A.IMAGENET_MEAN, std or A.IMAGENET_STD)

    def __call__(self, images: Any) -> Tensor:
        from fmlab.data.augment import to_float_images

        x = to_float_images(images, channels=self.channels)
        if self._resize is not None:
            x = self._resize(x, None)
        return self._norm(x)


class Objective(nn.Module):
    """Base class: holds ``encoder`` and no-op hooks; subclasses implement ``forward``."""

    name = "objective"
    encoder: nn.Module
    feature_dim: int
    preprocess: Callable[[Any], Tensor] | None = None

    def _set_encoder(self, encoder: nn.Module, feature_dim: int | None) -> None:
        """Store the feature extractor (a ``Backbone``'s trunk) and its preprocessing spec."""
        spec = getattr(encoder, "preprocess", None) if hasattr(encoder, "trunk") else None
        self.encoder, self.feature_dim = resolve_encoder(encoder, feature_dim)
        if spec is not None:
            self.preprocess = spec

    def prepare(self, images: Any) -> Tensor:
        """Raw uint8 images -> preprocessed float NCHW on the encoder's device."""
        fn = self.preprocess or DefaultPreprocess(_in_channels(self.encoder),
                                                  getattr(self.encoder, "img_size", None))
        device = next(self.encoder.parameters(), torch.empty(0)).device
        return fn(torch.as_tensor(images).cpu()).to(device)

    def forward(self, batch: Mapping[str, Any]) -> tuple[Tensor, dict[str, Any]]:
        raise NotImplementedError

    def on_train_start(self, max_steps: int) -> None:
        """Called once before training with the planned number of optimiser steps."""

    def on_after_optimizer_step(self, step: int, max_steps: int) -> None:
        """Called after each optimiser step (EMA updates, schedules)."""

    def embed(self, x: Tensor) -> Tensor:
        """Encoder features for monitors: uint8 images are preprocessed, float taken as is."""
        x = torch.as_tensor(x)
        if not x.is_floating_point():
            x = self.prepare(x)
        return self.encoder(x)
