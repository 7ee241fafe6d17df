"""Label-free distillation (SSLD, "Beyond Self-Supervision", Cui et al. 2021).

A student (encoder + linear head) matches a frozen teacher's soft predictions on unlabelled
images; no ground-truth term, so any extra unlabelled images help:

    L = T^2 * KL( softmax(t / T) || softmax(s / T) )   (batch mean)

T = 1 by default (SSLD/PaddleClas); the T^2 factor (Hinton) keeps gradient size independent of
T. The teacher maps images to logits (e.g. a ``Backbone`` with its head); it never trains and
stays in eval mode. ``batch["teacher_images"]`` may carry a differently preprocessed copy of the
images for the teacher; otherwise it sees ``batch["images"]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fmlab.errors import ConfigError, DataError
from fmlab.pretrain.base import Objective, require

__all__ = ["Distill", "distill_loss"]


def distill_loss(student_logits: Tensor, teacher_logits: Tensor,
                 temperature: float = 1.0) -> Tensor:
    """T^2 * KL(p_teacher || p_student) at temperature T, averaged over the batch."""
    if student_logits.shape != teacher_logits.shape:
        raise DataError(f"student logits {tuple(student_logits.shape)} and teacher logits "
                        f"{tuple(teacher_logits.shape)} differ in shape")
    log_ps = F.log_softmax(student_logits.float() / temperature, dim=-1)
    log_pt = F.log_softmax(teacher_logits.detach().float() / temperature, dim=-1)
    kl = F.kl_div(log_ps, log_pt, log_target=True, reduction="batchmean")
    return kl * temperature ** 2


def _infer_classes(teacher: nn.Module) -> int | None:
    head = getattr(teacher, "head", None)
    if isinstance(head, nn.Linear):
        return head.out_features
    return None


class Distill(Objective):
    """Student encoder + linear head trained to match ``teacher(images)`` logits."""

    name = "distill"

    def __init__(self, encoder: nn.Module, teacher: nn.Module, num_classes: int | None = None,
                 feature_dim: int | None = None, temperature: float = 1.0,
                 head: nn.Module | None = None) -> None:
        super().__init__()
        if temperature <= 0:
            raise ConfigError(f"temperature must be > 0, got {temperature}")
        self._set_encoder(encoder, feature_dim)
        if head is None:
            num_classes = num_classes or _infer_classes(teacher)
            if num_classes is None:
                raise ConfigError("Distill cannot tell the teacher's number of classes; pass "
                                  "num_classes= or head=")
            head = nn.Linear(self.feature_dim, num_classes)
        self.head = head
        self.teacher = teacher
        self.teacher.requires_grad_(False)
        self.teacher.eval()
        self.temperature = float(temperature)

    def train(self, mode: bool = True) -> Distill:
        super().train(mode)
        self.teacher.eval()  # frozen: BatchNorm statistics and dropout stay in inference mode
        return self

    def forward(self, batch: Mapping[str, Any]) -> tuple[Tensor, dict[str, Any]]:
        images = require(batch, "images", type(self).__name__)
        with torch.no_grad():
            t_logits = self.teacher(batch.get("teacher_images", images))
        s_logits = self.head(self.encoder(images))
        loss = distill_loss(s_logits, t_logits, self.temperature)
        agree = (s_logits.argmax(1) == t_logits.argmax(1)).float().mean()
        return loss, {"loss": loss.detach(), "agreement": agree.detach()}

    @classmethod
    def default_transform(cls, image_size: int = 32, padding: int | None = 4,
                          mean: Sequence[float] | None = None,
                          std: Sequence[float] | None = None, channels: int | None = None):
        """Pad-4 crop + flip (teacher and student see the same view)."""
        from fmlab.data.augment import supervised_transform

        return supervised_transform(image_size, padding, mean, std, channels)
