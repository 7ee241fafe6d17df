"""Supervised cross-entropy with a linear head on the encoder: the baseline every method
is compared against."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from fmlab.errors import ConfigError
from fmlab.pretrain.base import Objective, register_objective, require

__all__ = ["Supervised"]


@register_objective("supervised")
class Supervised(Objective):
    """CE(head(encoder(images)), labels) with optional label smoothing."""

    name = "supervised"
    needs = ("num_classes", "labels")

    def __init__(self, encoder: nn.Module, num_classes: int, feature_dim: int | None = None,
                 label_smoothing: float = 0.0, head: nn.Module | None = None) -> None:
        super().__init__()
        if num_classes < 2:
            raise ConfigError(f"num_classes must be >= 2, got {num_classes}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self._set_encoder(encoder, feature_dim)
        self.head = head if head is not None else nn.Linear(self.feature_dim, num_classes)
        self.num_classes, self.label_smoothing = num_classes, float(label_smoothing)

    def forward(self, batch: Mapping[str, Any]) -> tuple[Tensor, dict[str, Any]]:
        who = type(self).__name__
        images = require(batch, "images", who)
        labels = require(batch, "labels", who).long()
        logits = self.head(self.encoder(images))
        loss = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        acc = (logits.argmax(1) == labels).float().mean()
        return loss, {"loss": loss.detach(), "acc": acc.detach()}

    @classmethod
    def default_transform(cls, image_size: int = 32, padding: int | None = 4,
                          mean: Sequence[float] | None = None,
                          std: Sequence[float] | None = None, channels: int | None = None):
        """Pad-4 crop + flip (CIFAR recipe); RRC + flip when ``padding=None``."""
        from fmlab.data.augment import supervised_transform

        return supervised_transform(image_size, padding, mean, std, channels)
