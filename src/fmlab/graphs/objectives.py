"""Graph objectives for the engine: GraphCL pre-training (You et al., 2020) and supervised fine-tuning.

Both follow the engine's objective contract (``loss, logs = objective(batch)``, an ``encoder``
member that the engine exports) on batches of :class:`fmlab.data.graphs.GraphSource`. They live in
their own registry, ``GRAPH_OBJECTIVES``, not in ``fmlab.pretrain.OBJECTIVES``: those take images
and image transforms, and ``fmlab pretrain`` must not offer a graph method it cannot feed.

Augmentations draw from the global torch RNG, which the engine re-seeds from (seed, step) every
step, so a resumed run draws the same views.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fmlab.pretrain.simclr import contrastive_loss
from fmlab.registry import Registry
from fmlab.utils.validation import finite_float

__all__ = ["GRAPH_OBJECTIVES", "GraphCL", "GraphSupervised", "drop_edges", "mask_features",
           "register_graph_objective"]

GRAPH_OBJECTIVES: Registry[type] = Registry("graph objective")


def register_graph_objective(name: str) -> Any:
    """Class decorator: register a graph objective under ``name`` (sets ``cls.name``)."""
    def deco(cls: type) -> type:
        cls.name = name
        GRAPH_OBJECTIVES.add(name, cls)
        return cls
    return deco


def drop_edges(edge_index: Tensor, p: float, num_nodes: int) -> Tensor:
    """Drop each undirected edge with probability ``p`` (both directions together).

    Returns:
        (2, E') the kept directed edges, a subset of ``edge_index`` in its order.

    Examples:
        >>> e = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
        >>> drop_edges(e, 0.0, 3).tolist(), drop_edges(e, 1.0, 3).shape[1]
        ([[0, 1, 1, 2], [1, 0, 2, 1]], 0)
    """
    if edge_index.shape[1] == 0:
        return edge_index
    lo, hi = torch.minimum(edge_index[0], edge_index[1]), torch.maximum(edge_index[0], edge_index[1])
    _, pair = torch.unique(lo * num_nodes + hi, return_inverse=True)
    keep = torch.rand(int(pair.max()) + 1, device=edge_index.device) >= p
    return edge_index[:, keep[pair]]


def mask_features(x: Tensor, p: float) -> tuple[Tensor, Tensor]:
    """Zero the whole feature row of each node with probability ``p``.

    Returns:
        ``(x_masked, mask)`` with ``mask`` (N,) True at the masked nodes.

    Examples:
        >>> xm, m = mask_features(torch.ones(4, 2), 1.0)
        >>> xm.sum().item(), m.tolist()
        (0.0, [True, True, True, True])
    """
    mask = torch.rand(x.shape[0], device=x.device) < p
    return x.masked_fill(mask[:, None], 0.0), mask


@register_graph_objective("graphcl")
class GraphCL(nn.Module):
    """GraphCL: NT-Xent between two augmented views (edge dropping + node-feature masking) of each
    graph, on a projection of the GIN's sum-pooled embedding.

    Args:
        encoder: the GIN (``feature_dim`` = its embedding width).
        edge_drop: probability of dropping an undirected edge in a view.
        feature_mask: probability of zeroing a node's features in a view.
        temperature: NT-Xent temperature.
        proj_dim: width of the projection head's output.

    Examples:
        >>> from fmlab.models.gin import GIN
        >>> obj = GraphCL(GIN(in_dim=3, hidden=8, layers=1))
        >>> b = {"x": torch.eye(3).repeat(2, 1), "edge_index": torch.tensor([[0, 1, 3, 4], [1, 0, 4, 3]]),
        ...      "batch": torch.tensor([0, 0, 0, 1, 1, 1]), "num_graphs": torch.tensor(2)}
        >>> loss, logs = obj(b)
        >>> loss.dim(), sorted(logs)
        (0, ['contrast_acc', 'loss'])
    """

    name = "graphcl"

    def __init__(self, encoder: nn.Module, edge_drop: float = 0.2, feature_mask: float = 0.2,
                 temperature: float = 0.2, proj_dim: int = 64) -> None:
        super().__init__()
        finite_float("objective.edge_drop", edge_drop, low=0.0, high=1.0)
        finite_float("objective.feature_mask", feature_mask, low=0.0, high=1.0)
        finite_float("objective.temperature", temperature, low=1e-4)
        self.encoder = encoder
        d = encoder.feature_dim
        self.proj = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, proj_dim))
        self.edge_drop, self.feature_mask, self.temperature = edge_drop, feature_mask, temperature

    def view(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """One random view of the batch (the same node set; fewer edges, masked features)."""
        x, _ = mask_features(batch["x"].float(), self.feature_mask)
        edges = drop_edges(batch["edge_index"], self.edge_drop, batch["x"].shape[0])
        return {**batch, "x": x, "edge_index": edges}

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Any]]:
        z1 = self.proj(self.encoder(self.view(batch)))
        z2 = self.proj(self.encoder(self.view(batch)))
        loss, acc = contrastive_loss([z1, z2], temperature=self.temperature)
        return loss, {"loss": loss.detach(), "contrast_acc": acc}


@register_graph_objective("supervised")
class GraphSupervised(nn.Module):
    """Cross-entropy of a :class:`fmlab.models.gin.GraphClassifier` (the fine-tuning objective)."""

    name = "supervised"

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.encoder = model.encoder

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Any]]:
        logits = self.model(batch)
        loss = F.cross_entropy(logits, batch["labels"])
        acc = (logits.argmax(1) == batch["labels"]).float().mean()
        return loss, {"loss": loss.detach(), "train_acc": acc}
