"""The non-adversarial terms of a CycleGAN-style translator, as ``nn.Module``\\ s.

- cycle (Zhu et al. 2017):     ‖F(G(a)) − a‖₁ + ‖G(F(b)) − b‖₁ — each translation must be invertible;
- identity:                     ‖G(b) − b‖₁ + ‖F(a) − a‖₁ — an image already in the target domain is
  left alone (keeps tint/intensity from drifting);
- edge consistency (ParGANDA):  ‖E(a) − E(G(a))‖₁ + ‖E(b) − E(F(b))‖₁ for an edge map E
  (:mod:`fmlab.translate.edges`) — the outline, hence the label and the box, stays put.

The adversarial terms are :mod:`fmlab.gan.losses` pairs (LSGAN, CycleGAN's default) applied to
the PatchGAN logits. Each module takes the generators as arguments so that a test can pass
``nn.Identity()`` and check the reductions (the cycle loss of identity generators is 0).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

Translate = Callable[[torch.Tensor], torch.Tensor]


class CycleLoss(nn.Module):
    """Mean absolute reconstruction error of ``a → G → F`` plus ``b → F → G``.

    Examples:
        >>> a, b = torch.randn(2, 1, 8, 8), torch.randn(2, 1, 8, 8)
        >>> float(CycleLoss()(a, b, nn.Identity(), nn.Identity()))
        0.0
    """

    def forward(self, a: torch.Tensor, b: torch.Tensor, g_ab: Translate, g_ba: Translate,
                fake_b: torch.Tensor | None = None, fake_a: torch.Tensor | None = None
                ) -> torch.Tensor:
        fake_b = g_ab(a) if fake_b is None else fake_b
        fake_a = g_ba(b) if fake_a is None else fake_a
        return (g_ba(fake_b) - a).abs().mean() + (g_ab(fake_a) - b).abs().mean()


class IdentityLoss(nn.Module):
    """Mean absolute change that each generator makes to an image of its own target domain."""

    def forward(self, a: torch.Tensor, b: torch.Tensor, g_ab: Translate, g_ba: Translate
                ) -> torch.Tensor:
        return (g_ab(b) - b).abs().mean() + (g_ba(a) - a).abs().mean()


class EdgeConsistencyLoss(nn.Module):
    """‖E(x) − E(G(x))‖₁ for both directions, E a fixed edge extractor.

    Args:
        edges: the extractor (e.g. :class:`fmlab.translate.edges.SobelEdges`).
    """

    def __init__(self, edges: nn.Module) -> None:
        super().__init__()
        self.edges = edges

    def forward(self, a: torch.Tensor, fake_b: torch.Tensor, b: torch.Tensor,
                fake_a: torch.Tensor) -> torch.Tensor:
        e = self.edges
        return (e(a) - e(fake_b)).abs().mean() + (e(b) - e(fake_a)).abs().mean()
