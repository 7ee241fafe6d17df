"""CgT-GAN's caption rewards (papers.md #14): semantic (CLIP-cos / CLIP-agg) and their mix with
the naturalness reward of a text discriminator.

- CLIP-cos: r_sem = cos(E_T(ŷ), E_I(x)), the caption's agreement with its own image.
- CLIP-agg: r_sem = cos(E_T(ŷ), t_agg), t_agg = Σ_j softmax_j(cos(E_I(x), E_T(c_j)) / τ) E_T(c_j)
  over the top-k corpus sentences c_j nearest to the image: in the unpaired setting the image
  embedding and caption embeddings live in different regions of the joint space (the modality
  gap), so the target is a mixture of real sentences the image is close to rather than the
  image embedding itself.
- mixed: r = λ r_sem + (1 − λ) r_nat, r_nat = D(ŷ) ∈ [0, 1] from the text discriminator.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from fmlab.errors import ConfigError, DataError

__all__ = ["clip_agg_target", "mixed_reward", "semantic_reward"]


def clip_agg_target(image_emb: Tensor, corpus_emb: Tensor, tau: float = 0.01,
                    top_k: int | None = None) -> Tensor:
    """t_agg per image: the softmax(cos/τ)-weighted mean of the (top-k) nearest corpus embeddings.

    Args:
        image_emb: (B, D) image embeddings.
        corpus_emb: (N, D) embeddings of the external caption corpus.
        tau: softmax temperature (τ → 0: the nearest sentence; τ → ∞: the mean of the top k).
        top_k: keep only the k nearest sentences (``None``: all N).

    Returns:
        (B, D) aggregated text targets (not normalised).
    """
    if tau <= 0:
        raise ConfigError(f"clip_agg tau must be > 0, got {tau}")
    if image_emb.shape[-1] != corpus_emb.shape[-1]:
        raise DataError(f"clip_agg: image embeddings are {image_emb.shape[-1]}-d, corpus "
                        f"{corpus_emb.shape[-1]}-d")
    sims = F.normalize(image_emb, dim=-1) @ F.normalize(corpus_emb, dim=-1).T
    k = corpus_emb.shape[0] if top_k is None else min(int(top_k), corpus_emb.shape[0])
    if k < 1:
        raise ConfigError(f"clip_agg top_k must be >= 1, got {top_k}")
    top, idx = sims.topk(k, dim=1)
    w = torch.softmax(top / tau, dim=1)
    return torch.einsum("bk,bkd->bd", w, corpus_emb[idx])


def semantic_reward(caption_emb: Tensor, target_emb: Tensor) -> Tensor:
    """cos(E_T(ŷ), target) per row: target = E_I(x) (CLIP-cos) or t_agg (CLIP-agg)."""
    return F.cosine_similarity(caption_emb, target_emb, dim=-1)


def mixed_reward(r_sem: Tensor, r_nat: Tensor | None, lam: float) -> Tensor:
    """r = λ r_sem + (1 − λ) r_nat; ``r_nat=None`` requires λ = 1 (semantic reward only)."""
    if not 0.0 <= lam <= 1.0:
        raise ConfigError(f"reward weight lambda must lie in [0, 1], got {lam}")
    if r_nat is None:
        if lam != 1.0:
            raise ConfigError("reward weight lambda < 1 needs a naturalness reward (a text "
                              "discriminator)")
        return r_sem
    return lam * r_sem + (1.0 - lam) * r_nat
