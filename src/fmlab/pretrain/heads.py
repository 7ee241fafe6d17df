"""Projection heads: SimCLR/MoCo MLP and DINO's head with a weight-normalised last layer."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fmlab.errors import ConfigError


class ProjectionHead(nn.Sequential):
    """``num_layers`` linear layers; hidden ones are Linear -> (BatchNorm) -> ReLU.

    SimCLR v2 / MoCo v2 style: BN in the hidden layers when ``batch_norm``; the output layer is a
    plain Linear so embeddings are unconstrained before the loss's L2 normalisation.
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int = 2,
                 batch_norm: bool = True) -> None:
        if num_layers < 1:
            raise ConfigError(f"projection head needs num_layers >= 1, got {num_layers}")
        layers: list[nn.Module] = []
        dim = in_dim
        for _ in range(num_layers - 1):
            layers.append(nn.Linear(dim, hidden_dim, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(hidden_dim))
            layers.append(nn.ReLU(inplace=True))
            dim = hidden_dim
        layers.append(nn.Linear(dim, out_dim))
        super().__init__(*layers)


class WeightNormLinear(nn.Module):
    """Bias-free linear layer with rows ``g * v / ||v||``; ``g`` fixed to 1 when ``fix_norm``.

    DINO's last layer (``norm_last_layer=True`` freezes g = 1, which the DINO authors found
    stabilises training). Written out so the parameter names stay simple (``v``, ``g``).
    """

    def __init__(self, in_dim: int, out_dim: int, fix_norm: bool = True) -> None:
        super().__init__()
        self.v = nn.Parameter(torch.empty(out_dim, in_dim))
        nn.init.trunc_normal_(self.v, std=0.02)
        self.g = nn.Parameter(torch.ones(out_dim, 1), requires_grad=not fix_norm)

    def forward(self, x: Tensor) -> Tensor:
        w = self.g * F.normalize(self.v, dim=1)
        return F.linear(x, w)


class DINOHead(nn.Module):
    """MLP (GELU) -> bottleneck -> L2 normalise -> weight-normalised linear to ``out_dim``.

    ``use_bn`` puts a BatchNorm1d after each hidden linear layer (DINO's ``use_bn_in_head``).
    Batch statistics force every hidden unit to vary across the batch, which keeps short runs from
    mapping all images to one output, where centring then turns the teacher uniform.
    """

    def __init__(self, in_dim: int, out_dim: int = 2048, hidden_dim: int = 2048,
                 bottleneck_dim: int = 256, num_layers: int = 3,
                 norm_last_layer: bool = True, use_bn: bool = False) -> None:
        super().__init__()
        if num_layers < 1:
            raise ConfigError(f"DINO head needs num_layers >= 1, got {num_layers}")
        layers: list[nn.Module] = []
        dim = in_dim
        for _ in range(num_layers - 1):
            layers.append(nn.Linear(dim, hidden_dim))
            if use_bn:
                layers.append(nn.BatchNorm1d(hidden_dim))
            layers.append(nn.GELU())
            dim = hidden_dim
        layers.append(nn.Linear(dim, bottleneck_dim))
        self.mlp = nn.Sequential(*layers)
        for m in self.mlp.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        self.last_layer = WeightNormLinear(bottleneck_dim, out_dim, fix_norm=norm_last_layer)

    def forward(self, x: Tensor) -> Tensor:
        return self.last_layer(F.normalize(self.mlp(x), dim=-1, eps=1e-6))
