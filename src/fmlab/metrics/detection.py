"""Detection metrics: box-retrieval AP for a text query, and VOC-style detection mAP@IoU.

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


def box_iou(a, b) -> np.ndarray:
    """IoU matrix (N, M) of xyxy boxes ``a`` (N, 4) and ``b`` (M, 4) (0 where a union is empty).

    Examples:
        >>> box_iou([[0, 0, 2, 2]], [[1, 0, 3, 2], [0, 0, 2, 2]]).round(4).tolist()
        [[0.3333, 1.0]]
    """
    a = _as_numpy(a).astype(np.float64).reshape(-1, 4)
    b = _as_numpy(b).astype(np.float64).reshape(-1, 4)
    lt, rb = np.maximum(a[:, None, :2], b[None, :, :2]), np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda x: np.clip(x[:, 2:] - x[:, :2], 0, None).prod(-1)  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _voc_ap(tp: np.ndarray, n_gt: int) -> float:
    """All-point interpolated AP (VOC 2010+): area under the precision envelope of the PR curve."""
    if tp.size == 0:
        return 0.0
    ctp = np.cumsum(tp)
    recall = np.concatenate([[0.0], ctp / n_gt, [1.0]])
    precision = np.concatenate([[0.0], ctp / np.arange(1, tp.size + 1), [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.flatnonzero(recall[1:] != recall[:-1])
    return float(((recall[steps + 1] - recall[steps]) * precision[steps + 1]).sum())


def _class_tp(dets: list, gts: list, cls: int, iou: float) -> tuple[np.ndarray, int]:
    """True-positive flags of class ``cls``'s detections in score order, and its ground-truth count.

    Each detection takes the unmatched ground truth box of its class and image with the highest
    IoU >= ``iou``; a detection on an already matched box (a duplicate) is a false positive.
    """
    rows, n_gt = [], 0
    for i, ((db, ds, dl), (_, gl)) in enumerate(zip(dets, gts)):
        n_gt += int((gl == cls).sum())
        rows += [(s, i, b) for s, b in zip(ds[dl == cls], db[dl == cls])]
    rows.sort(key=lambda r: -r[0])  # stable: ties keep image/detection order
    used = {i: np.zeros(int((gl == cls).sum()), bool) for i, (_, gl) in enumerate(gts)}
    tp = np.zeros(len(rows))
    for j, (_, i, box) in enumerate(rows):
        g = gts[i][0][gts[i][1] == cls]
        if len(g) == 0:
            continue
        ov = np.where(used[i], -1.0, box_iou(box, g)[0])
        best = int(ov.argmax())
        if ov[best] >= iou:
            tp[j], used[i][best] = 1.0, True
    return tp, n_gt


def detection_map(detections, ground_truth, num_classes: int, iou: float = 0.5
                  ) -> tuple[np.ndarray, float]:
    """VOC-style mean average precision of detections at an IoU threshold.

    Args:
        detections: one ``(boxes (n, 4) xyxy, scores (n,), labels (n,))`` per image.
        ground_truth: one ``(boxes (m, 4) xyxy, labels (m,))`` per image.
        num_classes: classes ``0..num_classes-1``.
        iou: a detection is correct when its class matches and its IoU with an unmatched ground
            truth box of that class is >= ``iou``.

    Returns:
        (per-class AP (C,), NaN for classes with no ground truth; their mean over defined classes).

    Examples:
        >>> gt = [(np.array([[0, 0, 10, 10]]), np.array([3]))]
        >>> det = [(np.array([[0, 0, 10, 10], [0, 0, 10, 10]]), np.array([0.9, 0.8]), np.array([3, 3]))]
        >>> float(detection_map(det, gt, num_classes=5)[1])   # the duplicate comes after recall 1
        1.0
    """
    if len(detections) != len(ground_truth):
        raise DataError(f"detections: {len(detections)} images but ground_truth has {len(ground_truth)}")
    dets = [tuple(_as_numpy(a) for a in d) for d in detections]
    dets = [(b.reshape(-1, 4), s.reshape(-1), lab.reshape(-1)) for b, s, lab in dets]
    gts = [(_as_numpy(b).reshape(-1, 4), _as_numpy(lab).reshape(-1)) for b, lab in ground_truth]
    ap = np.full(num_classes, np.nan)
    for c in range(num_classes):
        tp, n_gt = _class_tp(dets, gts, c, iou)
        if n_gt:
            ap[c] = _voc_ap(tp, n_gt)
    defined = ap[~np.isnan(ap)]
    return ap, float(defined.mean()) if defined.size else float("nan")
