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
    """CE(head(encoder(images)), labels) with optional label smoothing.

    Two uses: supervised pre-training of an encoder with a new linear head (the constructor), and
    fine-tuning a complete classifier such as a PEFT-adapted backbone with its task head
    (:meth:`of_classifier`: the loss is the cross-entropy of ``model(images)``).

    Args:
        encoder: the feature extractor (a ``Backbone`` contributes its trunk).
        num_classes: number of classes (>= 2).
        feature_dim: the encoder's feature size when it cannot be read from the encoder.
        label_smoothing: in ``[0, 1)``.
        head: the classifier on the features (default: a new ``Linear``).

    Attributes:
        update_bn: whether BatchNorm layers update their running statistics in training (default
            True); False keeps every BatchNorm in eval mode whatever ``train()`` says, so a frozen
            backbone stays the pre-trained function. Not a constructor argument, so that the
            ``fmlab pretrain`` config generated from the signature keeps its keys.

    Examples:
        >>> import torch
        >>> obj = Supervised.of_classifier(torch.nn.Sequential(torch.nn.Linear(4, 3),
        ...                                torch.nn.BatchNorm1d(3)), update_bn=False)
        >>> loss, logs = obj.train()({"images": torch.randn(8, 4), "labels": torch.arange(8) % 3})
        >>> obj.model[1].training, sorted(logs)
        (False, ['train_accuracy'])
    """

    name = "supervised"
    needs = ("num_classes", "labels")
    update_bn: bool = True

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
        self.model: nn.Module | None = None  # set by of_classifier only

    @classmethod
    def of_classifier(cls, model: nn.Module, update_bn: bool = True) -> Supervised:
        """The objective of fine-tuning a complete classifier: CE of ``model(images)``.

        ``model`` is called as a whole (not split into trunk and head), so PEFT hooks and a
        backbone's own preprocessing of its input apply as at inference. Logs ``train_accuracy``.

        Args:
            model: maps a batch of images to logits.
            update_bn: see the class's attributes.

        Returns:
            The objective; ``embed(images)`` returns ``model(images)``.
        """
        obj = cls.__new__(cls)
        Objective.__init__(obj)
        obj.model = model
        obj.head = nn.Identity()
        obj.num_classes, obj.label_smoothing, obj.update_bn = 0, 0.0, bool(update_bn)
        return obj

    def train(self, mode: bool = True) -> Supervised:
        """Set the training mode; BatchNorm layers stay in eval mode unless ``update_bn``."""
        super().train(mode)
        if not self.update_bn:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def forward(self, batch: Mapping[str, Any]) -> tuple[Tensor, dict[str, Any]]:
        """Loss and logs of one batch with ``images`` and ``labels``."""
        if self.model is not None:
            logits = self.model(batch["images"])
            y = batch["labels"]
            loss = F.cross_entropy(logits.float(), y)
            return loss, {"train_accuracy": (logits.argmax(1) == y).float().mean().detach()}
        who = type(self).__name__
        images = require(batch, "images", who)
        labels = require(batch, "labels", who).long()
        logits = self.head(self.encoder(images))
        loss = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        acc = (logits.argmax(1) == labels).float().mean()
        return loss, {"loss": loss.detach(), "acc": acc.detach()}

    def embed(self, x: Tensor) -> Tensor:
        """Encoder features; for :meth:`of_classifier`, the classifier's logits."""
        return self.model(x) if self.model is not None else super().embed(x)

    @classmethod
    def default_transform(cls, image_size: int = 32, padding: int | None = 4,
                          mean: Sequence[float] | None = None,
                          std: Sequence[float] | None = None, channels: int | None = None):
        """Pad-4 crop + flip (CIFAR recipe); RRC + flip when ``padding=None``."""
        from fmlab.data.augment import supervised_transform

        return supervised_transform(image_size, padding, mean, std, channels)
