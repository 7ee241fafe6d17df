"""Inception Score: exp(E_x KL(p(y|x) || p(y))), per split, mean and std over splits.

Samples are shuffled (seeded) before splitting: generated sets are often ordered by class, and
splitting class-sorted samples changes the score enormously (guided-diffusion #165: 62 vs 298).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fmlab.errors import DataError
from fmlab.metrics._checks import as_features
from fmlab.metrics._types import MeanStd

_SUM_TOL = 1e-3  # softmax in float32 sums to 1 within ~1e-6; logits are far off.


def inception_score(probs: Any, splits: int = 10, seed: int = 0) -> MeanStd:
    """Inception Score of class probabilities: exp(E_x KL(p(y|x) || p(y))) per split.

    High when each sample is classified confidently (sharp p(y|x)) and the classes are used
    evenly (flat p(y)); its maximum is the number of classes.

    Args:
        probs: (N, C) class probabilities, rows non-negative and summing to one (softmax
            output, not logits), N >= ``splits``.
        splits: number of splits; the std across them is reported.
        seed: seed of the shuffle before splitting (class-sorted samples would bias every
            split).

    Returns:
        :class:`~fmlab.metrics.MeanStd` ``(mean, std)`` over the splits.

    Raises:
        DataError: rows that are not probabilities ("got logits?"), fewer rows than splits.

    Examples:
        A confident classifier that uses 10 classes equally scores 10; one that always says
        "uniform" scores 1:

        >>> import numpy as np
        >>> onehot = np.eye(10)[np.arange(100) % 10]
        >>> mean, std = inception_score(onehot, splits=1)
        >>> round(mean, 6), std
        (10.0, 0.0)
        >>> round(inception_score(np.full((100, 10), 0.1), splits=5).mean, 6)
        1.0
    """
    if splits < 1:
        raise DataError(f"inception score: splits must be >= 1, got {splits}")
    p = as_features(probs, "class probabilities", min_rows=splits)
    if (p < 0).any() or np.abs(p.sum(axis=1) - 1.0).max() > _SUM_TOL:
        raise DataError(
            "class probabilities: rows must be non-negative and sum to 1 "
            "(got logits? apply a softmax first)"
        )
    p = p[np.random.default_rng(seed).permutation(p.shape[0])]
    scores = np.empty(splits, dtype=np.float64)
    for i, part in enumerate(np.array_split(p, splits)):
        marginal = part.mean(axis=0)
        # 0 * log 0 = 0: classes a sample never predicts contribute nothing.
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(part > 0, part * (np.log(part) - np.log(marginal)), 0.0)
        scores[i] = np.exp(terms.sum(axis=1).mean())
    return MeanStd(float(scores.mean()), float(scores.std()))
