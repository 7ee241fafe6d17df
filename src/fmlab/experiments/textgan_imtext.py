"""Image-text scores of a caption generator (issue 23, ``fmlab gan eval --image-text REF``).

Any image-text model :func:`fmlab.multimodal.io.load_image_text_model` accepts (a ``fmlab clip
train`` run, ``open_clip:<arch>``) embeds each generated image with its image tower — through
:meth:`ImageTextModel.encode_image`, i.e. the tower's own preprocessing (input size, channels,
normalisation), exactly as in its training and zero-shot evaluation — and the caption the image
was drawn for with its text tower. Then:

- ``clip_score``: :func:`fmlab.metrics.text_image.clip_score` (2.5 · max(cos, 0), mean);
- ``r_precision``: :func:`fmlab.metrics.text_image.r_precision` with 99 distractor captions per
  image drawn from images of *other digits* (a caption of the same digit may describe the image
  just as well; with class-template training the model cannot tell them apart), fewer with a
  warning when the captions leave fewer;
- ``clip_score_real`` / ``r_precision_real``: the same for the real reference images the
  captions were written for — the ceiling a generator can reach with this judge.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from fmlab.errors import DataError
from fmlab.metrics.text_image import clip_score, r_precision

DEFAULT_DISTRACTORS = 99  # AttnGAN's protocol: one true caption among 100


@torch.no_grad()
def embed_pairs(model: Any, images: np.ndarray, captions: Sequence[str],
                batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """Joint embeddings ``(N, D)`` of uint8 images and of their captions (not normalised).

    Images go through ``model.encode_image`` as uint8, so the image tower's own preprocessing
    applies (grey → RGB, resize, normalisation): no second copy of it here.
    """
    if len(images) != len(captions):
        raise DataError(f"image-text scores: {len(images)} images for {len(captions)} captions")
    model.eval()
    x = np.ascontiguousarray(images)
    img = [model.encode_image(torch.from_numpy(x[i:i + batch_size])).float()
           for i in range(0, len(x), batch_size)]
    txt = [model.encode_text(list(captions[i:i + batch_size])).float()
           for i in range(0, len(captions), batch_size)]
    return torch.cat(img), torch.cat(txt)


def distractor_count(labels: np.ndarray | None, n: int, wanted: int = DEFAULT_DISTRACTORS) -> int:
    """The most distractors (≤ ``wanted``) every image can draw: ``n − 1`` without labels, else
    ``n`` minus the largest class's count. Warns when that is fewer than ``wanted``.

    Examples:
        >>> distractor_count(np.array([0, 0, 1, 2, 2, 2]), 6, 3)  # a class-2 image has 3 others
        3
    """
    pool = n - 1 if labels is None else n - int(np.bincount(np.asarray(labels)).max())
    if pool < 1:
        raise DataError(f"r_precision: {n} captions leave no distractor (captions of another "
                        "digit) for some image; evaluate more images (--n)")
    if pool < wanted:
        warnings.warn(f"r_precision: {n} captions leave at most {pool} distractors per image; "
                      f"using {pool} instead of {wanted} (chance 1/{pool + 1}); raise --n for "
                      "the standard 99", UserWarning, stacklevel=2)
    return min(pool, wanted)


def image_text_scores(model: Any, images: np.ndarray, captions: Sequence[str],
                      labels: np.ndarray | None = None, n_distractors: int = DEFAULT_DISTRACTORS,
                      seed: int = 0, batch_size: int = 500) -> dict[str, float]:
    """``{"clip_score", "r_precision"}`` of images against the captions they were drawn for.

    Args:
        model: an :class:`~fmlab.multimodal.model.ImageTextModel` (or anything with
            ``encode_image(uint8 NHW[C])`` and ``encode_text(list[str])``).
        images: uint8 ``(N, H, W)`` / ``(N, H, W, C)``.
        captions: one caption per image.
        labels: the captions' classes (distractors then come from other classes), or None.
        n_distractors: distractors per image; the caller passes :func:`distractor_count`'s.
        seed: the distractor draw's seed.
        batch_size: encoding batch size.
    """
    img, txt = embed_pairs(model, images, captions, batch_size)
    return {"clip_score": clip_score(img, txt),
            "r_precision": r_precision(img, txt, n_distractors, labels, seed)}


def image_text_results(model: Any, fakes: np.ndarray, reals: np.ndarray | None,
                       captions: Sequence[str], labels: np.ndarray, seed: int = 0,
                       batch_size: int = 500) -> tuple[dict[str, float], dict[str, Any]]:
    """Scores of the generated images (and ``*_real`` of the real ones) plus protocol facts.

    Returns:
        ``({"clip_score", "r_precision"[, "clip_score_real", "r_precision_real"]},
        {"model", "weights_sha256", "n_distractors", "distractors", "clip_score_w"})``.
    """
    labels = np.asarray(labels, dtype=np.int64)
    k = distractor_count(labels, len(labels))
    out = image_text_scores(model, fakes, captions, labels, k, seed, batch_size)
    if reals is not None:
        real = image_text_scores(model, reals, captions, labels, k, seed, batch_size)
        out.update({f"{m}_real": v for m, v in real.items()})
    proto = {"model": getattr(model, "name", type(model).__name__),
             "weights_sha256": getattr(model, "weights_sha256", None), "n_distractors": k,
             "distractors": "captions of other digits", "clip_score_w": 2.5}
    return out, proto
