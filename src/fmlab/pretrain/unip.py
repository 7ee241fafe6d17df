"""UNIP attention-pattern distillation (NMI-HAD, papers.md 34, reduced): a small student ViT learns
the *hybrid* attention patterns of a larger pre-trained teacher on unlabelled images of a new
modality (grey-scale here, the paper's "infrared-like" domain).

    L = mean_{images, heads, queries} KL(A_T(l*) ‖ A_S(last))

``A_S(last)`` are the student's last-layer attention maps, ``A_T(l*)`` the teacher's maps at the
layer ``l*`` chosen by its attention NMI (:func:`fmlab.metrics.attention.attention_nmi`): the layer
whose mean NMI on the first training batch (averaged over ranks under DDP) is closest to ``hybrid_nmi`` (between local, NMI → 1,
and global, NMI → 0), or a fixed ``teacher_layer``. The choice is stored in a buffer, so it
resumes with the weights. When the head counts differ, both sides are averaged over heads;
the token grids must match (same image size and patch grid). The teacher is frozen.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from fmlab.errors import ConfigError
from fmlab.models.vit import VisionTransformer, attention_maps
from fmlab.pretrain.base import Objective, register_objective, require

__all__ = ["UNIP", "attention_kl"]


def attention_kl(teacher: Tensor, student: Tensor, eps: float = 1e-8) -> Tensor:
    """mean KL(teacher ‖ student) over every leading index and query (rows are distributions).

    Examples:
        >>> a = torch.softmax(torch.randn(2, 3, 4, 4), -1)
        >>> float(attention_kl(a, a))
        0.0
    """
    t = teacher.float()
    kl = (t * (torch.log(t.clamp_min(eps)) - torch.log(student.float().clamp_min(eps)))).sum(-1)
    return kl.mean()


@register_objective("unip")
class UNIP(Objective):
    """Distil a teacher ViT's hybrid-layer attention into the student's last layer (see module doc).

    Args:
        encoder: the student ViT (the exported encoder).
        teacher: the frozen teacher ViT (same token grid).
        teacher_layer: the teacher layer to distil; -1 chooses it by NMI on the first batch.
        hybrid_nmi: the NMI the automatic choice aims at.

    Examples:
        >>> s = VisionTransformer(img_size=8, patch_size=4, embed_dim=8, depth=1, num_heads=2)
        >>> t = VisionTransformer(img_size=8, patch_size=4, embed_dim=16, depth=3, num_heads=4)
        >>> obj = UNIP(s, t, teacher_layer=1)
        >>> loss, logs = obj({"images": torch.randn(2, 3, 8, 8)})
        >>> int(logs["teacher_layer"]), loss.ndim
        (1, 0)
    """

    needs = ("teacher",)
    config_fields = (("teacher_weights", str, ""),)

    def __init__(self, encoder: nn.Module, teacher: nn.Module, teacher_layer: int = -1,
                 hybrid_nmi: float = 0.3) -> None:
        super().__init__()
        self._set_encoder(encoder, None)
        teacher = getattr(teacher, "trunk", teacher)
        if not isinstance(self.encoder, VisionTransformer) or not isinstance(teacher, VisionTransformer):
            raise ConfigError("unip: student and teacher must both be fmlab ViTs")
        if (teacher.num_patches, teacher.num_prefix_tokens) != (self.encoder.num_patches,
                                                                self.encoder.num_prefix_tokens):
            raise ConfigError(f"unip: the teacher's token grid ({teacher.num_patches} patches) must "
                              f"match the student's ({self.encoder.num_patches})")
        if not -1 <= teacher_layer < len(teacher.blocks):
            raise ConfigError(f"teacher_layer: {teacher_layer} is not -1 or a layer of the "
                              f"{len(teacher.blocks)}-layer teacher")
        if not 0.0 <= hybrid_nmi <= 1.0:
            raise ConfigError(f"hybrid_nmi: {hybrid_nmi} must lie in [0, 1]")
        self.teacher = teacher.requires_grad_(False).eval()
        self.hybrid_nmi = float(hybrid_nmi)
        self.register_buffer("layer", torch.tensor(int(teacher_layer)))

    def train(self, mode: bool = True) -> UNIP:
        super().train(mode)
        self.teacher.eval()
        return self

    @classmethod
    def provide(cls, need: str, section: Any) -> Any:
        """The teacher, from ``objective.teacher_weights`` (an fmlab pretrain run's ViT export)."""
        if need == "teacher":
            from fmlab.pretrain.selfdistill import vit_teacher_from_section

            return vit_teacher_from_section(section)
        return super().provide(need, section)

    def choose_layer(self, images: Tensor) -> int:
        """The teacher layer whose mean attention NMI on ``images`` is closest to ``hybrid_nmi``."""
        from fmlab.metrics.attention import attention_nmi

        from fmlab.pretrain._dist import all_reduce_mean

        with torch.no_grad():
            nmi = torch.stack([attention_nmi(a).mean() for a in attention_maps(self.teacher, images)])
        # under DDP every rank sees its own shard: average the NMI first so all ranks pick one layer
        nmi = all_reduce_mean(nmi.float()).tolist()
        return min(range(len(nmi)), key=lambda i: abs(nmi[i] - self.hybrid_nmi))

    def forward(self, batch: Mapping[str, Any]) -> tuple[Tensor, dict[str, Any]]:
        images = require(batch, "images", "unip")
        if int(self.layer) < 0:
            self.layer.fill_(self.choose_layer(images))
        layer = int(self.layer)
        with torch.no_grad():
            target = attention_maps(self.teacher, images, [layer])[0]
        student = attention_maps(self.encoder, images, [-1])[0]
        if target.shape[1] != student.shape[1]:  # different head counts: compare head means
            target, student = target.mean(1, keepdim=True), student.mean(1, keepdim=True)
        loss = attention_kl(target, student)
        return loss, {"kl": loss.detach(), "teacher_layer": float(layer)}

    @classmethod
    def default_transform(cls, image_size: int = 32, scale: tuple[float, float] = (0.2, 1.0),
                          grey: bool = True, mean: Sequence[float] | None = None,
                          std: Sequence[float] | None = None, channels: int | None = None):
        """RRC + flip, then grey-scale (the new modality; repeated to the model's channels)."""
        from fmlab.data import augment as A
        from fmlab.data.color import RandomGrayscale

        ops: list[Any] = [A.RandomResizedCrop(image_size, scale=scale), A.RandomHorizontalFlip(0.5)]
        if grey:
            ops.append(RandomGrayscale(1.0))
        ops.append(A.Normalize(mean or A.IMAGENET_MEAN, std or A.IMAGENET_STD))
        return A.BatchTransform({"images": A.Compose(ops)}, channels=channels)
