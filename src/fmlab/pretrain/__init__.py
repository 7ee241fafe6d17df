"""Pre-training objectives as losses: ``loss, logs = objective(batch)``.

Each objective owns its heads (and EMA copies), exposes ``encoder`` (the exported backbone) and a
``default_transform(...)`` building the batched augmentation it expects. Names resolve through
``OBJECTIVES``: ``create_objective("simclr", encoder=..., ...)``.
"""

from __future__ import annotations

from typing import Any

from fmlab.pretrain.base import Objective, resolve_encoder
from fmlab.pretrain.dino import DINO, dino_loss, koleo_loss
from fmlab.pretrain.distill import Distill, distill_loss
from fmlab.pretrain.heads import DINOHead, ProjectionHead, WeightNormLinear
from fmlab.pretrain.look import LOOK, look_loss
from fmlab.pretrain.mae import MAE, mae_loss, patch_targets
from fmlab.pretrain.moco import MoCo, moco_logits
from fmlab.pretrain.mp3 import MP3, position_loss
from fmlab.pretrain.simclr import SimCLR, SupCon, contrastive_loss
from fmlab.pretrain.supervised import Supervised
from fmlab.registry import Registry

OBJECTIVES: Registry[type[Objective]] = Registry("objective")
for _cls in (SimCLR, SupCon, MoCo, DINO, MAE, MP3, LOOK, Distill, Supervised):
    OBJECTIVES.add(_cls.name, _cls)


def create_objective(name: str, **kwargs: Any) -> Objective:
    """Build a registered objective by name, e.g. ``create_objective("mae", encoder=vit)``."""
    return OBJECTIVES.get(name)(**kwargs)


__all__ = [
    "DINO",
    "LOOK",
    "MAE",
    "MP3",
    "OBJECTIVES",
    "DINOHead",
    "Distill",
    "MoCo",
    "Objective",
    "ProjectionHead",
    "SimCLR",
    "SupCon",
    "Supervised",
    "WeightNormLinear",
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
    "resolve_encoder",
]
