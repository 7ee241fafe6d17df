"""T2I-SupCon part (a) (papers.md #40): CLIP pre-training plus a supervised contrastive term,
``loss.name: clip_supcon``.

    L = L_CLIP + λ · L_SC,
    L_SC = mean_i −1/|P(i)| Σ_{p∈P(i)} log exp(z_i·z_p/τ) / Σ_{a≠i} exp(z_i·z_a/τ)

over the 2B joint-space embeddings of a batch — its B images and its B captions pooled into one
set, L2-normalised — where P(i) are the other members with the same class label. The paper adds
L_SC "over image and text embeddings" beside the inter-modal matching loss of its DAMSM-like
encoder pre-training, so both modalities are anchors and keys: positives are same-class
image–text pairs (across modalities; the image's own caption is one of them) *and* same-class
image–image and text–text pairs (within a modality). The cross-modal-only variant already exists
as ``loss.name: multipos`` (PLIP's class-level InfoNCE); what SupCon adds is the pull of
same-class members *within* each modality, which CLIP's loss never sees. τ is fixed
(``loss.supcon.tau``), not the learned logit scale, as in the paper and in the GAN part (b).

Labels: a templated labelled source (:class:`~fmlab.multimodal.data.TemplateCaptions`) labels by
class; an image-text source is mapped to its images' class labels when the split has them and is
refused otherwise (its batch ``labels`` are image rows, which would make SupCon plain NT-Xent).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from fmlab.errors import ConfigError, DataError
from fmlab.multimodal.losses import clip_loss
from fmlab.multimodal.model import ImageTextModel
from fmlab.multimodal.objective import CLIP_OBJECTIVES, ContrastiveObjective
from fmlab.pretrain.simclr import contrastive_loss

__all__ = ["ClipSupConObjective", "SupConOptions", "class_label_table", "joint_supcon_loss"]


@dataclass
class SupConOptions:
    """``loss.supcon``: the SupCon term's weight λ and temperature τ (read by ``clip_supcon``)."""

    weight: float = 1.0
    tau: float = 0.1

    def validate(self, prefix: str = "loss.supcon") -> None:
        if self.weight < 0:
            raise ConfigError(f"{prefix}.weight: {self.weight!r} must be >= 0")
        if self.tau <= 0:
            raise ConfigError(f"{prefix}.tau: {self.tau!r} must be > 0")


def joint_supcon_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, labels: torch.Tensor,
                      tau: float) -> torch.Tensor:
    """SupCon over the pooled (2B, D) image and text embeddings; positives share ``labels``.

    Every image has at least its own caption as a positive, so no anchor is without one.

    Examples:
        >>> e = torch.eye(2)
        >>> float(joint_supcon_loss(e, e, torch.tensor([0, 1]), 0.1)) < 1e-3
        True
    """
    if labels.shape != (image_emb.shape[0],):
        raise DataError(f"labels must have shape ({image_emb.shape[0]},), got {tuple(labels.shape)}")
    return contrastive_loss([image_emb, text_emb], temperature=tau, labels=labels)[0]


def class_label_table(source: Any) -> torch.Tensor | None:
    """Map a batch's ``labels`` to class labels, or None when they already are classes.

    Raises:
        fmlab.errors.DataError: the source has no class labels (names ``loss.name``).
    """
    from fmlab.multimodal.data import ImageTextPairs, TemplateCaptions

    if isinstance(source, TemplateCaptions):
        return None
    if isinstance(source, ImageTextPairs):
        labels = getattr(source.split.images, "labels", None)
        if labels is not None:
            return torch.as_tensor(np.asarray(labels, dtype=np.int64))
        origin = source.split.images.origin
    else:
        origin = type(source).__name__
    raise DataError(f"loss.name: clip_supcon needs class labels (SupCon's positives share a "
                    f"class); {origin} has none — use a labelled source captioned by data.templates")


class ClipSupConObjective(ContrastiveObjective):
    """CLIP's symmetric InfoNCE plus ``weight`` × :func:`joint_supcon_loss`, an engine objective.

    Args:
        model: the two towers with their projections and logit scale.
        source: the training source (``captions``; class labels, see :func:`class_label_table`).
        opts: the ``loss.supcon`` section.
        cache_text: encode each caption once when the text tower is locked whole.
    """

    def __init__(self, model: ImageTextModel, source: Any, opts: SupConOptions,
                 cache_text: bool = True) -> None:
        opts.validate()
        table = class_label_table(source)
        super().__init__(model, source.captions, "clip", cache_text)
        self.opts = opts
        self.register_buffer("class_of", table if table is not None else torch.zeros(0, dtype=torch.int64),
                             persistent=False)

    def classes(self, labels: torch.Tensor) -> torch.Tensor:
        labels = labels.to(self.class_of.device)
        return self.class_of[labels] if self.class_of.numel() else labels

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        img = self.model.encode_image(batch["images"])
        txt = self.text_features(batch["caption_ids"])
        scale = self.model.logit_scale_value()
        clip = clip_loss(img, txt, scale)
        logs = {"loss_clip": clip.detach(), "logit_scale": scale.detach()}
        if self.opts.weight == 0:
            return clip, logs
        sc = joint_supcon_loss(img, txt, self.classes(batch["labels"]).to(img.device), self.opts.tau)
        logs["loss_supcon"] = sc.detach()
        return clip + self.opts.weight * sc, logs


@CLIP_OBJECTIVES.register("clip_supcon")
def _clip_supcon(model: ImageTextModel, source: Any, loss_cfg: Any) -> ClipSupConObjective:
    return ClipSupConObjective(model, source, loss_cfg.supcon, loss_cfg.cache_text)
