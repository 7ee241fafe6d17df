"""Box-retrieval metrics: average precision of ranking candidate boxes for a text query.

Open-vocabulary box retrieval scores every candidate box against one class query and ranks them;
a box is a match when it covers an object of that class. The AP of that ranking is the mean, over
the matching boxes, of the precision at each one's rank (non-interpolated AP, as
``sklearn.metrics.average_precision_score`` for tie-free scores). Ties are broken by the boxes'
order (stable sort), so the result is deterministic.
"""

from __future__ import annotations

import numpy as np
import torch

from fmlab.errors import DataError


def _as_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def box_retrieval_ap(scores, is_match) -> float:
    """Average precision of ranking boxes by ``scores`` for one query.

    Args:
        scores: (N,) scores of the candidate boxes (higher = more likely the query).
        is_match: (N,) bool, True where the box shows the queried class.

    Returns:
        AP in [0, 1]; NaN when no box matches (the query is undefined, not wrong).

    Examples:
        >>> box_retrieval_ap([0.9, 0.8, 0.1], [True, True, False])
        1.0
        >>> round(box_retrieval_ap([0.9, 0.8, 0.1], [False, False, True]), 4)  # 1/3
        0.3333
    """
    s, m = _as_numpy(scores).astype(np.float64).ravel(), _as_numpy(is_match).astype(bool).ravel()
    if s.shape != m.shape:
        raise DataError(f"is_match: {m.shape} boxes but scores has {s.shape}")
    if not np.isfinite(s).all():
        raise DataError("scores: contains NaN or inf")
    n_pos = int(m.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-s, kind="stable")
    hits = m[order]
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision[hits].sum() / n_pos)


def mean_box_retrieval_ap(scores, is_match) -> tuple[np.ndarray, float]:
    """AP of each query (rows) and their mean over the queries that have a match.

    Args:
        scores: (Q, N) scores of N boxes for Q queries.
        is_match: (Q, N) bool matches.

    Returns:
        (per-query AP (Q,) with NaN for queries without a match, mean of the defined ones; NaN if none).

    Examples:
        >>> ap, m = mean_box_retrieval_ap([[0.9, 0.1], [0.9, 0.1]], [[True, False], [False, True]])
        >>> ap.tolist(), m
        ([1.0, 0.5], 0.75)
    """
    s, m = _as_numpy(scores), _as_numpy(is_match)
    if s.ndim != 2 or s.shape != m.shape:
        raise DataError(f"scores: shape {s.shape} must be (Q,N) like is_match {m.shape}")
    ap = np.array([box_retrieval_ap(s[q], m[q]) for q in range(s.shape[0])], dtype=np.float64)
    defined = ap[~np.isnan(ap)]
    return ap, float(defined.mean()) if defined.size else float("nan")
