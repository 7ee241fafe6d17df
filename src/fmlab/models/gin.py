"""A small Graph Isomorphism Network (Xu et al., 2019) encoder built on PyTorch Geometric's GINConv.

Why PyG: its ``GINConv`` (h_v' = MLP((1 + eps) h_v + sum_{u in N(v)} h_u)) and ``global_add_pool``
are the reference implementations, and the pure-Python wheel needs no compiled extension
(``torch_scatter`` / ``torch_sparse`` are optional). It is the optional extra ``fmlab[graph]``;
without it building the encoder raises one error that says how to install it.

Input: a batch dict from :class:`fmlab.data.graphs.GraphSource` (``x`` (N, F) float,
``edge_index`` (2, E), ``batch`` (N,), ``num_graphs``). Output: (B, hidden) graph embeddings = the
sum over each graph's nodes of the last layer (sum pooling keeps GIN as expressive as 1-WL).
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor, nn

from fmlab.errors import ConfigError

__all__ = ["GIN", "GraphClassifier", "require_pyg"]


def require_pyg() -> Any:
    """``torch_geometric.nn``, or a ConfigError saying how to install it."""
    try:
        with warnings.catch_warnings():  # PyG's import calls the deprecated torch.jit.script
            warnings.simplefilter("ignore", FutureWarning)
            import torch_geometric.nn as pyg_nn
    except ImportError as e:
        raise ConfigError(f"the GIN encoder needs PyTorch Geometric ({e}); install the extra: "
                          "pip install -e '.[graph]'") from None
    return pyg_nn


class GIN(nn.Module):
    """``layers`` GINConv layers (2-layer MLPs with BatchNorm), ReLU between, sum pooling.

    Args:
        in_dim: node feature width (11 for the degree one-hot capped at 10).
        hidden: width of every layer and of the graph embedding.
        layers: number of GINConv layers.

    Examples:
        >>> enc = GIN(in_dim=3, hidden=8, layers=2).eval()
        >>> b = {"x": torch.eye(3), "edge_index": torch.tensor([[0, 1], [1, 0]]),
        ...      "batch": torch.tensor([0, 0, 1]), "num_graphs": torch.tensor(2)}
        >>> tuple(enc(b).shape), enc.feature_dim
        ((2, 8), 8)
    """

    name = "gin"

    def __init__(self, in_dim: int = 11, hidden: int = 64, layers: int = 3) -> None:
        super().__init__()
        pyg = require_pyg()
        self.in_dim, self.feature_dim, self.num_layers = in_dim, hidden, layers
        self.convs = nn.ModuleList()
        for i in range(layers):
            mlp = nn.Sequential(nn.Linear(in_dim if i == 0 else hidden, hidden), nn.BatchNorm1d(hidden),
                                nn.ReLU(), nn.Linear(hidden, hidden))
            self.convs.append(pyg.GINConv(mlp, train_eps=False))
        self._pool = pyg.global_add_pool

    def node_embeddings(self, x: Tensor, edge_index: Tensor) -> Tensor:
        """(N, hidden) node states after the last layer."""
        h = x.float()
        for i, conv in enumerate(self.convs):
            h = conv(h, edge_index)
            if i < len(self.convs) - 1:
                h = torch.relu(h)
        return h

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        h = self.node_embeddings(batch["x"], batch["edge_index"])
        return self._pool(h, batch["batch"], size=int(batch["num_graphs"]))


class GraphClassifier(nn.Module):
    """A GIN encoder and a linear head: the fine-tuned model (encoder + head both trained)."""

    def __init__(self, encoder: GIN, num_classes: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.feature_dim, num_classes)

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        return self.head(self.encoder(batch))
