"""Caption conditioning for any generator/discriminator of the GAN lab (issue 23; papers.md #11, #35).

A sentence embedding e (MiniLM or a ``fmlab clip train`` text tower, 384-d or so) is too large and
too smooth to feed a small G directly, so — as in GAN-CLS — a learned projection compresses it to
a condition vector c = LeakyReLU(W e + b) (128-d in the paper, ``c_dim`` here):

- :class:`CaptionGenerator` wraps an *unconditional* generator built with ``z_dim = z + c_dim``:
  G(z, e) = G_base([z; c_G(e)]);
- :class:`CaptionDiscriminator` wraps an unconditional discriminator: its embedding φ(x) gets
  the adversarial logit ψ(φ) plus a projection term ⟨c_D(e), V φ⟩ (Miyato & Koyama's projection
  with the class embedding replaced by the caption's condition vector), so s(x, e) is high only
  when the image is real-looking AND fits its caption — what the matching-aware loss of
  :mod:`fmlab.gan.matching` trains.

G and D each own their projection (D must not share G's).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fmlab.errors import DataError
from fmlab.gan.nets.base import Discriminator, Generator

__all__ = ["CaptionDiscriminator", "CaptionGenerator", "CaptionProjector"]


class CaptionProjector(nn.Module):
    """c = LeakyReLU_0.2(W e + b): the compressed condition vector of a caption embedding."""

    def __init__(self, e_dim: int, c_dim: int) -> None:
        super().__init__()
        if e_dim < 1 or c_dim < 1:
            raise DataError(f"CaptionProjector: e_dim and c_dim must be >= 1, got {e_dim}, {c_dim}")
        self.e_dim, self.c_dim = e_dim, c_dim
        self.fc = nn.Linear(e_dim, c_dim)

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        if e.dim() != 2 or e.shape[1] != self.e_dim:
            raise DataError(f"caption embeddings must have shape (B, {self.e_dim}), got "
                            f"{tuple(e.shape)}")
        return F.leaky_relu(self.fc(e), 0.2)


class CaptionGenerator(nn.Module):
    """G(z, e) = base([z; c(e)]) for an unconditional ``base`` whose z_dim is z_dim + c_dim.

    Args:
        base: an unconditional generator of the registry, built with ``z_dim = z_dim + c_dim``.
        e_dim: caption embedding size.
        c_dim: condition vector size.

    Examples:
        >>> from fmlab.gan import create_generator
        >>> base = create_generator("mlp", z_dim=4 + 2, hidden=8, img_shape=(1, 4, 4))
        >>> G = CaptionGenerator(base, e_dim=5, c_dim=2)
        >>> G(torch.zeros(3, 4), torch.zeros(3, 5)).shape, G.z_dim
        (torch.Size([3, 1, 4, 4]), 4)
    """

    def __init__(self, base: Generator, e_dim: int, c_dim: int) -> None:
        super().__init__()
        if base.num_classes:
            raise DataError("CaptionGenerator needs an unconditional base generator (the caption "
                            "replaces class labels)")
        if base.z_dim <= c_dim:
            raise DataError(f"CaptionGenerator: the base's z_dim {base.z_dim} must exceed c_dim "
                            f"{c_dim} (build it with z_dim = z + c_dim)")
        self.base, self.project = base, CaptionProjector(e_dim, c_dim)
        self.z_dim = base.z_dim - c_dim
        self.img_shape = base.img_shape

    def sample_z(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """z ~ N(0, I) of shape (n, z_dim) (without the condition part)."""
        return torch.randn(n, self.z_dim, generator=generator)

    def forward(self, z: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        if z.shape[0] != e.shape[0]:
            raise DataError(f"CaptionGenerator: {z.shape[0]} latents but {e.shape[0]} captions")
        return self.base(torch.cat([z, self.project(e)], dim=1))


class CaptionDiscriminator(nn.Module):
    """s(x, e) = ψ(φ(x)) + ⟨c(e), V φ(x)⟩ over an unconditional ``base`` discriminator.

    Args:
        base: an unconditional discriminator of the registry (its ``embed`` and ``adv_logit``).
        e_dim: caption embedding size.
        c_dim: condition vector size.
    """

    def __init__(self, base: Discriminator, e_dim: int, c_dim: int) -> None:
        super().__init__()
        if base.num_classes:
            raise DataError("CaptionDiscriminator needs an unconditional base discriminator")
        self.base, self.project = base, CaptionProjector(e_dim, c_dim)
        self.V = nn.Linear(base.feature_dim, c_dim, bias=False)

    def match_score(self, phi: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """The projection term ⟨c(e), V φ⟩, shape (B,)."""
        return (self.project(e) * self.V(phi)).sum(dim=1)

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        if x.shape[0] != e.shape[0]:
            raise DataError(f"CaptionDiscriminator: {x.shape[0]} images but {e.shape[0]} captions")
        phi = self.base.embed(x)
        return self.base.adv_logit(phi) + self.match_score(phi, e)
