"""Pre-training objectives as losses: ``loss, logs = objective(batch)``.

Each objective owns its heads (and EMA copies), exposes ``encoder`` (the exported backbone) and a
``default_transform(...)`` building the batched augmentation it expects. Each class registers
itself where it is defined (``@register_objective("simclr")``); this file only imports the
modules (lightly's flat list). Names resolve through ``OBJECTIVES``:
``create_objective("simclr", encoder=..., ...)``.
"""

from __future__ import annotations

from typing import Any

from fmlab.pretrain.base import OBJECTIVES, ExportPatch, Objective, register_objective, resolve_encoder
from fmlab.pretrain.dino import DINO, dino_loss, koleo_loss
from fmlab.pretrain.distill import Distill, TeacherImages, build_teacher, distill_loss
from fmlab.pretrain.heads import DINOHead, ProjectionHead, WeightNormLinear
from fmlab.pretrain.look import LOOK, look_loss
from fmlab.pretrain.mae import MAE, mae_loss, patch_targets
from fmlab.pretrain.moco import MoCo, moco_logits
from fmlab.pretrain.mp3 import MP3, position_loss
from fmlab.pretrain.selfie import Selfie, selfie_loss
from fmlab.pretrain.simclr import SimCLR, SupCon, contrastive_loss
from fmlab.pretrain.sit import SiT
from fmlab.pretrain.spark import SparK, SparKDense, sparse_batch_norm
from fmlab.pretrain.supervised import Supervised
from fmlab.pretrain.croco import CroCo  # noqa: F401  (registers "croco")
from fmlab.pretrain.satmae import SatMAE  # noqa: F401  (registers "satmae")
from fmlab.pretrain.composite import CompositeObjective  # noqa: E402  (registers "composite")
from fmlab.pretrain.gpt4image import GPT4Image  # noqa: E402  (registers "gpt4image")
from fmlab.pretrain.selfdistill import MAESelfDistill  # noqa: E402  (registers "mae_selfdistill")
from fmlab.pretrain.unip import UNIP  # noqa: E402  (registers "unip")
from fmlab.pretrain.m3i import M3I  # noqa: E402  (registers "m3i")


def create_objective(name: str, **kwargs: Any) -> Objective:
    """Build a registered objective by name.

    Args:
        name: a registered name (``OBJECTIVES.names()``).
        **kwargs: the class's constructor arguments (``encoder=`` at least).

    Returns:
        The objective module.

    Examples:
        >>> from torch import nn
        >>> obj = create_objective("simclr", encoder=nn.Flatten(), feature_dim=12)
        >>> type(obj).__name__, obj.name
        ('SimCLR', 'simclr')
    """
    return OBJECTIVES.get(name)(**kwargs)


__all__ = [
    "CompositeObjective",
    "DINO",
    "LOOK",
    "M3I",
    "MAE",
    "MAESelfDistill",
    "MP3",
    "OBJECTIVES",
    "DINOHead",
    "Distill",
    "GPT4Image",
    "ExportPatch",
    "MoCo",
    "Objective",
    "ProjectionHead",
    "Selfie",
    "SiT",
    "SimCLR",
    "SparK",
    "SparKDense",
    "SupCon",
    "Supervised",
    "TeacherImages",
    "UNIP",
    "WeightNormLinear",
    "build_teacher",
    "contrastive_loss",
    "create_objective",
    "dino_loss",
    "distill_loss",
    "koleo_loss",
    "look_loss",
    "mae_loss",
    "moco_logits",
    "patch_targets",
    "position_loss",
    "register_objective",
    "selfie_loss",
    "sparse_batch_norm",
    "resolve_encoder",
]
