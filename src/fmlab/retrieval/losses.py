"""Metric-learning losses on unit descriptors: contrastive (Siamese) and triplet, as nn.Modules.

Both take one training tuple per anchor: ``anchor (A, D)``, ``positive (A, D)`` and
``negatives (A, K, D)`` and return the mean loss over anchors. Distances are Euclidean between
unit vectors (``d² = 2 − 2·cos``).

* :class:`ContrastiveLoss` (Radenović et al.'s form, used by cirtorch and Dark Side augmentation):
  ``½ d(a, p)² + Σ_k ½ max(0, margin − d(a, n_k))²`` — pulls positives together and pushes
  negatives beyond the margin, each term on its own;
* :class:`TripletLoss`: ``Σ_k max(0, d(a, p)² − d(a, n_k)² + margin)`` — only the order of the
  positive and each negative matters.
"""

from __future__ import annotations

import torch  # noqa: F401 - the doctests use it
import torch.nn as nn
from torch import Tensor

from fmlab.registry import Registry

__all__ = ["LOSSES", "ContrastiveLoss", "TripletLoss"]

LOSSES: Registry = Registry("metric loss")


def _distances(anchor: Tensor, positive: Tensor, negatives: Tensor) -> tuple[Tensor, Tensor]:
    if anchor.shape != positive.shape or negatives.ndim != 3 or negatives.shape[0] != anchor.shape[0]:
        raise ValueError(f"anchor {tuple(anchor.shape)}, positive {tuple(positive.shape)} and "
                         f"negatives {tuple(negatives.shape)} must be (A, D), (A, D), (A, K, D)")
    d_pos = (anchor - positive).norm(dim=-1)
    d_neg = (anchor.unsqueeze(1) - negatives).norm(dim=-1)
    return d_pos, d_neg


@LOSSES.register("contrastive")
class ContrastiveLoss(nn.Module):
    """``½ d(a,p)² + Σ_k ½ max(0, margin − d(a,n_k))²``, averaged over anchors.

    Examples:
        >>> a = torch.tensor([[1.0, 0.0]])
        >>> float(ContrastiveLoss(0.7)(a, a, torch.tensor([[[0.0, 1.0]]])))  # d(a,n) = √2 > 0.7
        0.0
    """

    def __init__(self, margin: float = 0.7) -> None:
        super().__init__()
        self.margin = float(margin)

    def forward(self, anchor: Tensor, positive: Tensor, negatives: Tensor) -> Tensor:
        d_pos, d_neg = _distances(anchor, positive, negatives)
        pull = 0.5 * d_pos.pow(2)
        push = 0.5 * (self.margin - d_neg).clamp(min=0).pow(2).sum(dim=1)
        return (pull + push).mean()


@LOSSES.register("triplet")
class TripletLoss(nn.Module):
    """``Σ_k max(0, d(a,p)² − d(a,n_k)² + margin)``, averaged over anchors.

    Examples:
        >>> a, n = torch.tensor([[1.0, 0.0]]), torch.tensor([[[0.0, 1.0]]])
        >>> float(TripletLoss(0.5)(a, a, n)), float(TripletLoss(0.5)(a, n[:, 0], a[:, None]))
        (0.0, 2.5)
    """

    def __init__(self, margin: float = 0.5) -> None:
        super().__init__()
        self.margin = float(margin)

    def forward(self, anchor: Tensor, positive: Tensor, negatives: Tensor) -> Tensor:
        d_pos, d_neg = _distances(anchor, positive, negatives)
        return (d_pos.pow(2).unsqueeze(1) - d_neg.pow(2) + self.margin).clamp(min=0).sum(1).mean()

