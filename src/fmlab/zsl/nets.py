"""The conditional feature generator and critic of f-CLSWGAN / LisGAN.

Both are one-hidden-layer MLPs on the concatenation of their input with the class semantic
vector a (here a MiniLM sentence embedding), as in the official f-CLSWGAN and LisGAN code
(``MLP_G``/``MLP_CRITIC``: LeakyReLU 0.2, weights N(0, 0.02)). The generator ends in a ReLU
because the backbone features it imitates (pooled post-ReLU activations, min-max scaled to
start at 0) are non-negative. The critic returns a :class:`~fmlab.gan.nets.base.DOutput`, so
:func:`fmlab.gan.regularizers.gradient_penalty` applies unchanged with ``y = a``.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from fmlab.gan.nets.base import DOutput


def _init(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, 0.0, 0.02)
        nn.init.zeros_(module.bias)


class FeatureGenerator(nn.Module):
    """G(z, a) -> a feature vector: ``[z, a] -> hidden -> LeakyReLU -> feat_dim -> ReLU``.

    Args:
        z_dim: the noise size.
        sem_dim: the class semantic vector's size.
        feat_dim: the generated feature's size (the backbone's).
        hidden: the hidden width.

    Examples:
        >>> G = FeatureGenerator(4, 6, 8, hidden=16)
        >>> G(torch.randn(3, 4), torch.randn(3, 6)).shape
        torch.Size([3, 8])
    """

    def __init__(self, z_dim: int, sem_dim: int, feat_dim: int, hidden: int = 256) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.net = nn.Sequential(nn.Linear(z_dim + sem_dim, hidden), nn.LeakyReLU(0.2),
                                 nn.Linear(hidden, feat_dim), nn.ReLU())
        self.apply(_init)

    def forward(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([z, a], dim=1))


class FeatureCritic(nn.Module):
    """D(x, a) -> a WGAN critic value per row: ``[x, a] -> hidden -> LeakyReLU -> 1``.

    Args:
        feat_dim: the feature size.
        sem_dim: the class semantic vector's size.
        hidden: the hidden width.

    Examples:
        >>> D = FeatureCritic(8, 6, hidden=16)
        >>> D(torch.randn(3, 8), torch.randn(3, 6)).logits.shape
        torch.Size([3])
    """

    def __init__(self, feat_dim: int, sem_dim: int, hidden: int = 256) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(feat_dim + sem_dim, hidden), nn.LeakyReLU(0.2))
        self.head = nn.Linear(hidden, 1)
        self.apply(_init)

    def forward(self, x: torch.Tensor, a: torch.Tensor) -> DOutput:
        h = self.body(torch.cat([x, a], dim=1))
        return DOutput(logits=self.head(h).squeeze(1), embedding=h)
