"""Label-free distillation (SSLD, "Beyond Self-Supervision", Cui et al. 2021).

A student (encoder + linear head) matches a frozen teacher's soft predictions on unlabelled
images; no ground-truth term, so any extra unlabelled images help:

    L = T^2 * KL( softmax(t / T) || softmax(s / T) )   (batch mean)

T = 1 by default (SSLD/PaddleClas); the T^2 factor (Hinton) keeps gradient size independent of
T. The teacher maps images to logits (e.g. a ``Backbone`` with its head); it never trains and
stays in eval mode. ``batch["teacher_images"]`` may carry a differently preprocessed copy of the
images for the teacher; otherwise it sees ``batch["images"]``. In ``fmlab pretrain`` the teacher is
built from the ``objective.teacher`` / ``objective.teacher_weights`` config keys and, when its
preprocessing differs from the student's, :class:`TeacherImages` adds that copy.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fmlab.errors import ConfigError, DataError
from fmlab.pretrain.base import Objective, register_objective, require

__all__ = ["Distill", "TeacherImages", "build_teacher", "distill_loss"]


def distill_loss(student_logits: Tensor, teacher_logits: Tensor,
                 temperature: float = 1.0) -> Tensor:
    """T^2 * KL(p_teacher || p_student) at temperature T, averaged over the batch.

    Args:
        student_logits: (N, C) student logits.
        teacher_logits: (N, C) teacher logits (detached here).
        temperature: T > 0 softening both distributions.

    Returns:
        The scalar loss; 0 when the student's logits equal the teacher's.

    Examples:
        >>> import torch
        >>> t = torch.randn(4, 10)
        >>> float(distill_loss(t.clone(), t)) == 0.0
        True
        >>> bool(distill_loss(torch.zeros(4, 10), t, temperature=2.0) > 0)
        True
    """
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


class TeacherImages:
    """Add ``teacher_images``: the student's augmented view re-normalised for a teacher whose
    preprocessing differs (LeNet-5's 1-channel [0, 1] input vs the student's RGB ImageNet
    statistics). Both networks then see exactly the same crop.

    Args:
        base: the student's batch transform (writes ``images``).
        student: the student's preprocessing spec (``mean``, ``std``).
        teacher: the teacher's spec (``channels``, ``input_size``, ``mean``, ``std``).
    """

    def __init__(self, base: Any, student: Any, teacher: Any) -> None:
        self.base, self.student, self.teacher = base, student, teacher

    def __call__(self, batch: Any, generator: Any) -> dict[str, Any]:
        out = self.base(batch, generator)
        x = out["images"]
        mean = torch.tensor(self.student.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.student.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        x01 = x * std + mean
        t = self.teacher
        if x01.shape[1] != t.channels:
            if t.channels == 1:
                w = torch.tensor((0.299, 0.587, 0.114), dtype=x.dtype, device=x.device)
                x01 = (x01 * w.view(1, 3, 1, 1)).sum(1, keepdim=True)
            else:
                x01 = x01.expand(-1, t.channels, -1, -1)
        if tuple(x01.shape[-2:]) != tuple(t.input_size):
            x01 = F.interpolate(x01, size=tuple(t.input_size), mode="bilinear",
                                align_corners=False)
        tm = torch.tensor(t.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        ts = torch.tensor(t.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        out["teacher_images"] = (x01 - tm) / ts
        return out


def _same_preprocess(a: Any, b: Any) -> bool:
    return (tuple(a.input_size), a.channels, tuple(a.mean), tuple(a.std)) == \
        (tuple(b.input_size), b.channels, tuple(b.mean), tuple(b.std))


def build_teacher(section: Any) -> nn.Module:
    """The frozen distillation teacher named by a config section.

    Args:
        section: has ``teacher`` (a ``create_backbone`` name) and ``teacher_weights`` (a path,
            ``${VAR}`` expanded; None: random weights, with a warning).

    Returns:
        A ``Backbone`` with its classifier head.
    """
    from fmlab.engine.config import expand_path
    from fmlab.models import create_backbone

    weights = expand_path(section.teacher_weights, "objective.teacher_weights")
    if weights is None:
        warnings.warn("objective.teacher_weights is null: distilling from a randomly "
                      "initialised teacher (only useful for smoke tests)", stacklevel=2)
    teacher = create_backbone(section.teacher, weights=weights)
    if getattr(teacher, "head", None) is None:
        raise ConfigError(f"objective.teacher: {section.teacher!r} has no classifier head to "
                          f"distil from")
    return teacher


@register_objective("distill")
class Distill(Objective):
    """Student encoder + linear head trained to match ``teacher(images)`` logits."""

    needs = ("teacher",)  # built from the two config keys below
    config_fields = (("teacher", str, "resnet56_cifar"), ("teacher_weights", str | None, None))

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
    def provide(cls, need: str, section: Any) -> Any:
        """The teacher network, from ``objective.teacher`` and ``objective.teacher_weights``."""
        if need == "teacher":
            return build_teacher(section)
        return super().provide(need, section)

    def wrap_transform(self, transform: Any, preprocess: Any) -> Any:
        """Give the teacher its own copy of the view when its preprocessing differs."""
        spec = getattr(self.teacher, "preprocess", None)
        if spec is None or _same_preprocess(spec, preprocess):
            return transform
        return TeacherImages(transform, preprocess, spec)

    @classmethod
    def default_transform(cls, image_size: int = 32, padding: int | None = 4,
                          mean: Sequence[float] | None = None,
                          std: Sequence[float] | None = None, channels: int | None = None):
        """Pad-4 crop + flip (teacher and student see the same view)."""
        from fmlab.data.augment import supervised_transform

        return supervised_transform(image_size, padding, mean, std, channels)
