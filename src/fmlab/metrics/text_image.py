"""Text-image consistency metrics for text-conditioned generators (issue 23), pure functions of
embeddings, predictions and frames.

- :func:`clip_score`: CLIPScore (Hessel et al. 2021), w · max(cos(E_I(x), E_T(t)), 0) averaged,
  w = 2.5 — with *any* image-text model of the registry (here: a ``fmlab clip train`` model).
- :func:`r_precision`: AttnGAN's R-precision — for each generated image, rank its own caption
  among it plus ``n_distractors`` captions drawn from other images (of another class when labels
  are given) by cosine; the share of images whose own caption ranks first (R = 1).
- :func:`attribute_agreement`: share of generated images whose attribute, as predicted by a
  held-out classifier/measurement, equals what the caption asked for (class accuracy when the
  attribute is the class).
- :func:`frame_jitter`: mean absolute difference between consecutive frames of generated videos
  (temporal coherence: lower is smoother).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from fmlab.errors import DataError

__all__ = ["attribute_agreement", "clip_score", "frame_jitter", "r_precision"]


def _pair_check(image_emb: Tensor, text_emb: Tensor, who: str) -> None:
    if image_emb.dim() != 2 or image_emb.shape != text_emb.shape:
        raise DataError(f"{who}: image {tuple(image_emb.shape)} and text {tuple(text_emb.shape)} "
                        "embeddings must both be (N, D), one caption per image")


def clip_score(image_emb: Tensor, text_emb: Tensor, w: float = 2.5) -> float:
    """Mean CLIPScore w · max(cos, 0) of each image with its own caption.

    Examples:
        >>> round(clip_score(torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 1.0]])), 6)  # 2.5·cos 45°
        1.767767
    """
    _pair_check(image_emb, text_emb, "clip_score")
    cos = F.cosine_similarity(image_emb.double(), text_emb.double(), dim=-1)
    return float((w * cos.clamp_min(0)).mean())


def r_precision(image_emb: Tensor, text_emb: Tensor, n_distractors: int = 99,
                labels: Tensor | None = None, seed: int = 0) -> float:
    """R-precision (R = 1): the share of images whose own caption beats ``n_distractors`` others.

    Args:
        image_emb: (N, D) embeddings of generated images.
        text_emb: (N, D) embeddings of the captions they were generated from.
        n_distractors: mismatched captions per image (AttnGAN: 99), drawn without replacement
            from the other images' captions.
        labels: optional (N,) classes; distractors then come only from other classes (a caption of
            the same class may describe the image just as well).
        seed: seed of the distractor draw.

    Returns:
        The share in [0, 1]; chance is 1 / (n_distractors + 1).
    """
    _pair_check(image_emb, text_emb, "r_precision")
    n = image_emb.shape[0]
    rng = np.random.default_rng(seed)
    img = F.normalize(image_emb.double(), dim=-1)
    txt = F.normalize(text_emb.double(), dim=-1)
    lab = None if labels is None else np.asarray(labels)
    hits = 0
    for i in range(n):
        pool = np.flatnonzero(np.arange(n) != i) if lab is None else np.flatnonzero(lab != lab[i])
        if len(pool) < n_distractors:
            raise DataError(f"r_precision: image {i} has {len(pool)} possible distractors, fewer "
                            f"than n_distractors={n_distractors}")
        cand = np.concatenate([[i], rng.choice(pool, size=n_distractors, replace=False)])
        sims = txt[torch.from_numpy(cand)] @ img[i]
        hits += int(sims[0] > sims[1:].max())
    return hits / n


def attribute_agreement(predicted: np.ndarray | Tensor, requested: np.ndarray | Tensor) -> float:
    """Share of images whose measured/predicted attribute equals the caption's."""
    p, r = np.asarray(predicted), np.asarray(requested)
    if p.shape != r.shape or p.ndim != 1 or not len(p):
        raise DataError(f"attribute_agreement: predicted {p.shape} and requested {r.shape} must be "
                        "the same non-empty (N,)")
    return float((p == r).mean())


def frame_jitter(videos: Tensor) -> float:
    """Mean |x_{t+1} − x_t| over consecutive frames of (N, T, C, H, W) videos (values as given)."""
    if videos.dim() != 5 or videos.shape[1] < 2:
        raise DataError(f"frame_jitter: videos must be (N, T >= 2, C, H, W), got {tuple(videos.shape)}")
    return float((videos[:, 1:] - videos[:, :-1]).abs().double().mean())
