"""Self-distilled further pre-training (papers.md 2): MAE on the target domain plus a pull of the
student's final representations towards a frozen teacher that was further pre-trained there.

The recipe has three stages, each an ordinary ``fmlab pretrain`` / ``fmlab finetune`` run:

1. further pre-train the initial encoder θ_init with MAE on the target images → teacher θ_T
   (``configs/pretrain/further_mae_eurosat.yaml``, ``model.weights = θ_init``);
2. start a student again from θ_init and train it with this objective,
   L = L_MAE(student) + λ · mean_tokens ‖h_S − sg(h_T)‖², where h are the encoders' final
   (normalised) token representations of the *same* visible tokens (``mae_selfdistill``,
   ``configs/pretrain/further_selfdistill_eurosat.yaml``, ``objective.teacher_weights`` = the stage-1
   run's ``encoder.safetensors``);
3. fine-tune the student on the target labels (``fmlab finetune``).

The distillation keeps the student near a representation that fits the domain without letting
the reconstruction loss alone overfit a small target set.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from fmlab.errors import ConfigError, DataError
from fmlab.models.vit import VisionTransformer
from fmlab.pretrain.base import register_objective, require
from fmlab.pretrain.mae import MAE, mae_loss

__all__ = ["MAESelfDistill", "load_vit_teacher", "vit_teacher_from_section"]


def load_vit_teacher(weights: str | Path) -> VisionTransformer:
    """The frozen ViT trunk exported by an ``fmlab pretrain`` run (``encoder.json`` beside it
    names the architecture and its options).

    Raises:
        ConfigError: a missing file or record, or an encoder that is not a ViT.
    """
    from fmlab.models import create_backbone

    path = Path(weights)
    meta = path.with_name("encoder.json")
    if not path.is_file() or not meta.is_file():
        raise ConfigError(f"objective.teacher_weights: {path} needs encoder.json beside it "
                          f"(the export of an fmlab pretrain run)")
    rec = json.loads(meta.read_text())
    trunk = create_backbone(rec["architecture"], weights=path, **rec.get("kwargs", {})).trunk
    if not isinstance(trunk, VisionTransformer):
        raise ConfigError(f"objective.teacher_weights: {path} holds a {type(trunk).__name__}, not a ViT")
    return trunk


def vit_teacher_from_section(section: Any) -> VisionTransformer:
    """The frozen ViT teacher named by ``objective.teacher_weights`` (``${VAR}`` expanded), for the
    objectives that distil from an fmlab ViT export (``mae_selfdistill``, ``unip``).

    Raises:
        ConfigError: the key is empty, or :func:`load_vit_teacher` refuses the file.
    """
    from fmlab.engine.config import expand_path

    weights = expand_path(section.teacher_weights or None, "objective.teacher_weights")
    if weights is None:
        raise ConfigError("objective.teacher_weights: give the teacher ViT's RUN_DIR/encoder.safetensors")
    return load_vit_teacher(weights)


@register_objective("mae_selfdistill")
class MAESelfDistill(MAE):
    """MAE + λ·‖h_S − sg(h_T)‖² on the visible tokens' final representations (see module doc).

    Args:
        encoder: the student ViT (start it from the same weights as the teacher's start).
        teacher: the frozen, further pre-trained ViT of the same shape.
        distill_weight: λ (the paper: about 1).
        **mae: MAE's options (mask ratio, decoder).

    Examples:
        >>> vit = VisionTransformer(img_size=8, patch_size=4, embed_dim=8, depth=1, num_heads=2)
        >>> import copy
        >>> obj = MAESelfDistill(vit, copy.deepcopy(vit), mask_ratio=0.5, decoder_dim=8, decoder_heads=2)
        >>> loss, logs = obj({"images": torch.randn(2, 3, 8, 8)})
        >>> float(logs["distill"])  # the teacher is the student: nothing to pull
        0.0
    """

    needs = ("teacher",)
    config_fields = (("teacher_weights", str, ""),)

    def __init__(self, encoder: nn.Module, teacher: nn.Module, distill_weight: float = 1.0,
                 mask_ratio: float = 0.75, decoder_dim: int = 128, decoder_depth: int = 2,
                 decoder_heads: int = 4, norm_pix_loss: bool = True) -> None:
        super().__init__(encoder, mask_ratio, decoder_dim, decoder_depth, decoder_heads, norm_pix_loss)
        if distill_weight < 0:
            raise ConfigError(f"distill_weight must be >= 0, got {distill_weight}")
        teacher = getattr(teacher, "trunk", teacher)
        s = self.encoder
        if not isinstance(teacher, VisionTransformer) or (teacher.embed_dim, teacher.num_patches,
                                                          teacher.num_prefix_tokens) != (
                s.embed_dim, s.num_patches, s.num_prefix_tokens):
            raise ConfigError("teacher: must be a ViT with the student's width, patch grid and "
                              "prefix tokens (the same architecture further pre-trained)")
        self.teacher = teacher.requires_grad_(False).eval()
        self.distill_weight = float(distill_weight)

    def train(self, mode: bool = True) -> MAESelfDistill:
        super().train(mode)
        self.teacher.eval()  # frozen, whatever the engine asks
        return self

    @classmethod
    def provide(cls, need: str, section: Any) -> Any:
        """The teacher, from ``objective.teacher_weights`` (the stage-1 run's export)."""
        if need == "teacher":
            return vit_teacher_from_section(section)
        return super().provide(need, section)

    def forward(self, batch: Mapping[str, Any]) -> tuple[Tensor, dict[str, Any]]:
        images = require(batch, "images", type(self).__name__)
        if images.shape[-1] != self.encoder.img_size:
            raise DataError(f"MAE expects {self.encoder.img_size}px images, got {tuple(images.shape[-2:])}")
        ids_keep, mask = self._mask(batch, images.shape[0], images.device)
        latent = self.encoder.forward_tokens(images, ids_keep=ids_keep)
        rec = mae_loss(self.decode(latent, ids_keep), self.encoder.patchify(images), mask,
                       self.norm_pix_loss)
        with torch.no_grad():
            target = self.teacher.forward_tokens(images, ids_keep=ids_keep)
        distill = (latent.float() - target.float()).pow(2).sum(-1).mean()
        loss = rec + self.distill_weight * distill
        return loss, {"mae": rec.detach(), "distill": distill.detach(), "mask_ratio": mask.float().mean()}
