"""SimCLR (NT-Xent) and its supervised-contrastive variant (SupCon).

For 2N views of N images, with z L2-normalised and sim the cosine similarity:

    l_i = -(1/|P(i)|) sum_{p in P(i)} log[ exp(sim(z_i, z_p)/tau) / sum_{k != i} exp(sim(z_i, z_k)/tau) ]

P(i) is the other view(s) of the same image (NT-Xent; with two views this is exactly SimCLR's
loss) or every other view with the same label (SupCon, Khosla et al. 2020, "L_out"). The loss is
the mean over anchors with at least one positive. Under DDP, embeddings are gathered from all
ranks with gradients and each rank's anchors contrast against the global batch.

Default tau = 0.2: SimCLR's 0.5 (lightly) / 0.1 (mmpretrain) are tuned for batches of thousands;
solo-learn's small-scale recipes use 0.2, which also works at batch 128-512 on CIFAR.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fmlab.errors import ConfigError, DataError
from fmlab.pretrain import _dist
from fmlab.pretrain.base import Objective, register_objective, require
from fmlab.pretrain.heads import ProjectionHead

__all__ = ["SimCLR", "SupCon", "contrastive_loss"]


def contrastive_loss(views: Sequence[Tensor], temperature: float = 0.2,
                     labels: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """NT-Xent (``labels=None``) or SupCon over ``V`` views, each (N, D).

    Args:
        views: V embeddings of the same N images (L2-normalised here).
        temperature: tau > 0.
        labels: (N,) class labels: positives are same-label views (SupCon); None: the other
            views of the same image (NT-Xent).

    Returns:
        ``(loss, acc)``; ``acc`` is the fraction of anchors whose most similar other
        embedding is a positive.

    Examples:
        >>> import torch
        >>> z = torch.eye(4)
        >>> loss, acc = contrastive_loss([z, z], temperature=0.1)
        >>> float(acc), bool(loss < contrastive_loss([z, z.roll(1, 0)], temperature=0.1)[0])
        (1.0, True)
    """
    if len(views) < 1 or (labels is None and len(views) < 2):
        raise DataError("contrastive loss needs at least two views (or labels)")
    if temperature <= 0:
        raise ConfigError(f"temperature must be > 0, got {temperature}")
    n = views[0].shape[0]
    v = len(views)
    z = F.normalize(torch.cat(list(views), dim=0).float(), dim=1)  # (V*N, D), view-major
    rank, _world = _dist.rank_and_world()
    if labels is None:
        ids = (torch.arange(n, device=z.device) + rank * n).repeat(v)
    else:
        if labels.shape[0] != n:
            raise DataError(f"labels have {labels.shape[0]} rows but each view has {n}")
        ids = labels.to(z.device).long().repeat(v)
    keys = _dist.gather_with_grad(z)
    key_ids = _dist.all_gather_nograd(ids)
    logits = z @ keys.T / temperature
    rows = torch.arange(v * n, device=z.device)
    self_mask = torch.zeros_like(logits, dtype=torch.bool)
    self_mask[rows, rows + rank * v * n] = True
    logits = logits.masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    pos = (ids[:, None] == key_ids[None, :]) & ~self_mask
    n_pos = pos.sum(1)
    has_pos = n_pos > 0
    per_anchor = -log_prob.masked_fill(~pos, 0.0).sum(1) / n_pos.clamp(min=1)
    if not bool(has_pos.any()):
        raise DataError("no anchor has a positive (every label is unique and there is one view)")
    loss = per_anchor[has_pos].mean()
    with torch.no_grad():
        top = logits.argmax(1)
        acc = pos[rows, top].float()[has_pos].mean()
    return loss, acc


@register_objective("simclr")
class SimCLR(Objective):
    """Encoder + projection MLP + NT-Xent on ``batch["views"]`` (a list of V >= 2 tensors).

    With ``supervised=True`` the loss is SupCon and ``batch["labels"]`` is required; that switch
    is the class's choice (the ``supcon`` objective), not a config key.
    """

    filled_by_run = (*Objective.filled_by_run, "supervised")

    def __init__(self, encoder: nn.Module, feature_dim: int | None = None,
                 proj_hidden_dim: int = 512, proj_dim: int = 128, proj_layers: int = 2,
                 temperature: float = 0.2, supervised: bool = False) -> None:
        super().__init__()
        if temperature <= 0:
            raise ConfigError(f"temperature must be > 0, got {temperature}")
        self._set_encoder(encoder, feature_dim)
        self.head = ProjectionHead(self.feature_dim, proj_hidden_dim, proj_dim, proj_layers)
        self.temperature = float(temperature)
        self.supervised = bool(supervised)

    def project(self, views: Sequence[Tensor]) -> list[Tensor]:
        """Embeddings of each view; same-shaped views share one encoder pass."""
        if all(t.shape == views[0].shape for t in views):
            z = self.head(self.encoder(torch.cat(list(views), dim=0)))
            return list(z.chunk(len(views), dim=0))
        return [self.head(self.encoder(t)) for t in views]

    def forward(self, batch: Mapping[str, Any]) -> tuple[Tensor, dict[str, Any]]:
        views = require(batch, "views", type(self).__name__)
        labels = require(batch, "labels", type(self).__name__) if self.supervised else None
        loss, acc = contrastive_loss(self.project(views), self.temperature, labels)
        return loss, {"loss": loss.detach(), "pos_top1": acc}

    @classmethod
    def default_transform(cls, image_size: int = 32, n_views: int = 2,
                          scale: tuple[float, float] = (0.08, 1.0), jitter: float = 0.5,
                          blur_p: float = 0.0, mean: Sequence[float] | None = None,
                          std: Sequence[float] | None = None, channels: int | None = None):
        """SimCLR views: RRC, flip, jitter (0.4, 0.4, 0.4, 0.1) p=0.8, grey p=0.2, normalise."""
        from fmlab.data import augment as A

        view = A.simclr_view(image_size, scale=scale, jitter=jitter, blur_p=blur_p,
                             mean=mean or A.IMAGENET_MEAN, std=std or A.IMAGENET_STD)
        return A.BatchTransform({"views": [view] * n_views}, channels=channels)


@register_objective("supcon")
class SupCon(SimCLR):
    """SimCLR with the supervised-contrastive loss (labels define the positives)."""

    needs = ("labels",)

    def __init__(self, encoder: nn.Module, feature_dim: int | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("supervised", True)
        super().__init__(encoder, feature_dim, **kwargs)
