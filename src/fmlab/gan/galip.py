"""GALIP's two extra terms at MNIST scale (papers.md #35): the image-text similarity in G's loss
and the matching-aware gradient penalty (MA-GP) in D's.

- G: L_G = −E[s(G(z, e), e)] − λ·cos(E_I(G(z, e)), e). GALIP's E_I is CLIP's image tower, whose
  space is the text tower's. Our captions are embedded by MiniLM, which has no image tower, so
  :class:`AlignedImageEncoder` makes one: the frozen VAE encoder of
  :mod:`fmlab.gan.nets.vae_tower` followed by a linear map into the MiniLM space, fitted once
  by ridge regression from training images to their caption embeddings (closed form) and frozen.
- D: MA-GP (DF-GAN, kept by GALIP) penalises the gradient of s(x, e) on *real, matched* pairs
  with respect to both the image and the sentence: k·E[‖(∇_x s, ∇_e s)‖^p], k = 2, p = 6 — it
  smooths D around the real data manifold *and* around the right caption.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fmlab.errors import DataError
from fmlab.gan.nets.vae_tower import VAEEncoderTower

__all__ = ["AlignedImageEncoder", "clip_similarity", "fit_ridge_map", "ma_gradient_penalty"]


def fit_ridge_map(features: Tensor, targets: Tensor, ridge: float) -> nn.Linear:
    """The linear map W f + b minimising ‖W f + b − t‖² + ridge·‖W‖² (closed form, float64).

    Args:
        features: (N, F) inputs.
        targets: (N, D) targets.
        ridge: the L2 weight (> 0) on W (b is not penalised: the data are centred).

    Returns:
        An ``nn.Linear(F, D)`` holding W and b (float32, gradients off).
    """
    if features.dim() != 2 or targets.dim() != 2 or len(features) != len(targets):
        raise DataError(f"fit_ridge_map: features {tuple(features.shape)} and targets "
                        f"{tuple(targets.shape)} must be (N, F) and (N, D)")
    f, t = features.double(), targets.double()
    fm, tm = f.mean(0), t.mean(0)
    fc, tc = f - fm, t - tm
    a = fc.T @ fc + ridge * torch.eye(f.shape[1], dtype=torch.float64)
    w = torch.linalg.solve(a, fc.T @ tc)                      # (F, D)
    lin = nn.Linear(f.shape[1], t.shape[1])
    with torch.no_grad():
        lin.weight.copy_(w.T.float())
        lin.bias.copy_((tm - fm @ w).float())
    return lin.requires_grad_(False)


class AlignedImageEncoder(nn.Module):
    """E_I(x) = W·[h1(x); μ(x)] + b: the frozen VAE tower mapped into the caption space.

    Args:
        tower: the (pre-trained) VAE encoder tower; frozen here.
        proj: the fitted map (:func:`fit_ridge_map`); frozen here.
    """

    def __init__(self, tower: VAEEncoderTower, proj: nn.Linear) -> None:
        super().__init__()
        self.tower = tower.requires_grad_(False).eval()
        self.proj = proj.requires_grad_(False)

    def train(self, mode: bool = True) -> AlignedImageEncoder:
        """Always in eval mode: it is fitted once and frozen."""
        return super().train(False)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(self.tower.features(x))


def clip_similarity(image_emb: Tensor, text_emb: Tensor) -> Tensor:
    """Mean cosine of each image embedding with its caption's, the term G maximises."""
    if image_emb.shape != text_emb.shape:
        raise DataError(f"clip_similarity: image {tuple(image_emb.shape)} and text "
                        f"{tuple(text_emb.shape)} embeddings differ in shape")
    return F.cosine_similarity(image_emb, text_emb.to(image_emb.dtype), dim=-1).mean()


def ma_gradient_penalty(D: nn.Module, x: Tensor, e: Tensor, p: float = 6.0) -> Tensor:
    """E[‖(∇_x s(x, e), ∇_e s(x, e))‖₂^p] on real matched pairs (multiply by k outside).

    Args:
        D: a caption discriminator, ``D(x, e) -> (B,)`` logits.
        x: (B, C, H, W) real images.
        e: (B, E) their own captions' embeddings.
        p: the power (DF-GAN/GALIP: 6).

    Returns:
        The scalar penalty (differentiable w.r.t. D's parameters).
    """
    x = x.detach().float().requires_grad_(True)
    e = e.detach().float().requires_grad_(True)
    s = D(x, e)
    gx, ge = torch.autograd.grad(s.sum(), (x, e), create_graph=True)
    sq = gx.flatten(1).pow(2).sum(1) + ge.flatten(1).pow(2).sum(1)
    return sq.clamp_min(1e-12).sqrt().pow(p).mean()
