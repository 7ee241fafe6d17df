"""Generalized-mean (GeM) pooling and the retrieval network built on it.

GeM (Radenović et al., TPAMI 2018) pools a non-negative feature map per channel as
``(mean(x ** p)) ** (1 / p)``: p = 1 is average pooling, p → ∞ tends to max pooling, and a
learnable p (initialised at 3) lets the network choose how much to focus on the strongest
activations — the pooling Dark Side augmentation's retrieval CNN uses. The global descriptor is
the L2-normalised pooled vector, so descriptors are compared by dot product (cosine).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

__all__ = ["GeM", "RetrievalNet", "gem"]


def gem(x: Tensor, p: Tensor | float, eps: float = 1e-6) -> Tensor:
    """GeM of a ``(N, C, H, W)`` map → ``(N, C)``; values are clamped to ``eps`` first.

    Examples:
        >>> x = torch.tensor([[[[1.0, 3.0]]]])
        >>> float(gem(x, 1.0)), round(float(gem(x, 2.0)), 4)
        (2.0, 2.2361)
    """
    return x.clamp(min=eps).pow(p).mean(dim=(-2, -1)).pow(1.0 / p)


class GeM(nn.Module):
    """GeM pooling with a (learnable by default) exponent ``p``."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6, learnable: bool = True) -> None:
        super().__init__()
        if p <= 0:
            raise ValueError(f"GeM: p must be > 0, got {p}")
        self.eps = float(eps)
        self.p = nn.Parameter(torch.tensor(float(p)), requires_grad=learnable)

    def forward(self, x: Tensor) -> Tensor:
        return gem(x, self.p, self.eps)

    def extra_repr(self) -> str:
        return f"p={float(self.p.detach()):.3f}, eps={self.eps}"


class RetrievalNet(nn.Module):
    """Image → unit-norm global descriptor: ``trunk.forward_map`` → GeM → L2 normalisation.

    Args:
        trunk: a module with ``forward_map(x) -> (N, C, h, w)`` (e.g.
            :class:`~fmlab.models.resnet_cifar.ResNetCifarTrunk`), fed normalised float NCHW.
        mean, std: per-channel normalisation of pixels in [0, 1] (the trunk's own).
        p: GeM's initial exponent.
        freeze_bn: keep BatchNorm layers in eval mode while training (cirtorch's choice when
            fine-tuning a pre-trained ResNet: small mixed-domain tuples would corrupt the running
            statistics); their affine parameters still train.
    """

    def __init__(self, trunk: nn.Module, mean: tuple[float, ...], std: tuple[float, ...],
                 p: float = 3.0, freeze_bn: bool = True) -> None:
        super().__init__()
        self.trunk = trunk
        self.pool = GeM(p)
        self.freeze_bn = bool(freeze_bn)
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> RetrievalNet:
        super().train(mode)
        if mode and self.freeze_bn:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def forward(self, x: Tensor) -> Tensor:
        """Float ``(N, C, H, W)`` in [0, 1] → ``(N, D)`` unit vectors."""
        fmap = self.trunk.forward_map((x - self.mean) / self.std)
        return F.normalize(self.pool(fmap), dim=1)

    @torch.no_grad()
    def embed(self, images: Tensor, batch_size: int = 500) -> Tensor:
        """Descriptors of uint8 ``(N, H, W, C)`` images, in eval mode, ``batch_size`` at a time."""
        was = self.training
        self.eval()
        out = [self(images[i:i + batch_size].permute(0, 3, 1, 2).float() / 255.0)
               for i in range(0, len(images), batch_size)]
        self.train(was)
        return torch.cat(out) if out else torch.empty(0)
