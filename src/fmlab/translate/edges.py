"""Edge extractors for the edge-consistency loss ‖E(x) − E(G(x))‖₁ (ParGANDA's structure term).

A translator that only has to fool a discriminator and close a cycle may move or redraw an
object's outline (a cycle can be closed by a steganographic code); an edge term anchors the
outline of the translated image to the source's. ``EDGES`` maps a name to a factory of an
``nn.Module`` taking float (N, C, H, W) and returning (N, 1, H, W); ``none`` turns the term off.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from fmlab.registry import Registry

EDGES: Registry[Callable[[], nn.Module | None]] = Registry("edge extractor")

_SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


class SobelEdges(nn.Module):
    """Sobel gradient magnitude of the channel mean: fixed, parameter-free, differentiable.

    Replicate padding keeps the image border from looking like an edge; ``eps`` keeps the square
    root's gradient finite on flat regions.

    Examples:
        >>> e = SobelEdges()
        >>> flat = torch.ones(2, 3, 8, 8)
        >>> float(e(flat).abs().max()) < 1e-2
        True
    """

    def __init__(self, eps: float = 1e-6) -> None:
        super().__init__()
        k = torch.stack([_SOBEL_X, _SOBEL_X.t()]).unsqueeze(1) / 8.0  # (2, 1, 3, 3), unit slope
        self.register_buffer("kernel", k, persistent=False)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = F.conv2d(F.pad(x.mean(1, keepdim=True), (1, 1, 1, 1), mode="replicate"),
                     self.kernel.to(x.dtype))
        return (g.pow(2).sum(1, keepdim=True) + self.eps).sqrt()


EDGES.add("sobel", SobelEdges)
EDGES.add("none", lambda: None)


def create_edges(name: str) -> nn.Module | None:
    """The edge extractor registered as ``name`` (None for ``none``).

    Examples:
        >>> type(create_edges("sobel")).__name__, create_edges("none")
        ('SobelEdges', None)
    """
    return EDGES.get(name)()
