"""Zero-shot metrics as pure functions: per-class-mean top-1 and the GZSL harmonic mean.

Both follow the protocol of Xian et al. (GBU, 2018) that f-CLSWGAN and LisGAN report:
accuracy is averaged per class (so a large class cannot hide a small one), ZSL top-1 scores a
classifier over the unseen classes only, and GZSL scores one classifier over *all* classes on
seen test samples (S) and unseen test samples (U), summarised by H = 2·S·U / (S + U), which is
low unless both are high (a classifier that ignores the unseen classes gets U = 0, H = 0).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fmlab.errors import DataError


def per_class_accuracy(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[int]) -> float:
    """Mean over ``classes`` of the top-1 accuracy on the samples of that class.

    Args:
        y_true: (N,) true class indices.
        y_pred: (N,) predicted class indices (in the same index space).
        classes: the classes averaged over; each must have at least one sample.

    Returns:
        The per-class-mean accuracy in [0, 1].

    Raises:
        DataError: shapes differ, or a class in ``classes`` has no sample.

    Examples:
        >>> per_class_accuracy(np.array([0, 0, 0, 1]), np.array([0, 0, 0, 0]), [0, 1])
        0.5
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape:
        raise DataError(f"per_class_accuracy: y_true {y_true.shape} and y_pred {y_pred.shape} differ")
    accs = []
    for c in classes:
        mask = y_true == c
        if not mask.any():
            raise DataError(f"per_class_accuracy: class {c} has no test sample")
        accs.append(float((y_pred[mask] == c).mean()))
    return float(np.mean(accs))


def harmonic_mean(s: float, u: float) -> float:
    """H = 2·S·U / (S + U), and 0 when both are 0.

    Examples:
        >>> harmonic_mean(0.5, 0.5), harmonic_mean(1.0, 0.0), harmonic_mean(0.0, 0.0)
        (0.5, 0.0, 0.0)
    """
    return 0.0 if s + u <= 0 else 2.0 * s * u / (s + u)


def zsl_top1(y_true: np.ndarray, unseen_scores: np.ndarray, unseen: Sequence[int]) -> float:
    """ZSL top-1: argmax over the unseen classes only, per-class mean over them.

    Args:
        y_true: (N,) true class indices of unseen test samples (global indices).
        unseen_scores: (N, U) scores over the unseen classes, column j = class ``unseen[j]``.
        unseen: the global indices of the unseen classes.

    Returns:
        The per-class-mean top-1 accuracy.
    """
    pred = np.asarray(unseen)[np.asarray(unseen_scores).argmax(1)]
    return per_class_accuracy(y_true, pred, unseen)


def gzsl_scores(y_true: np.ndarray, scores: np.ndarray, seen: Sequence[int],
                unseen: Sequence[int]) -> dict[str, float]:
    """GZSL: argmax over all classes; S on seen test samples, U on unseen ones, and H.

    Args:
        y_true: (N,) true class indices of the GZSL test set (seen test + unseen test).
        scores: (N, K) scores over all K classes (column = global class index).
        seen, unseen: the global indices of the seen and unseen classes.

    Returns:
        ``{"gzsl_seen": S, "gzsl_unseen": U, "gzsl_h": H}``.
    """
    pred = np.asarray(scores).argmax(1)
    y_true = np.asarray(y_true)
    s_mask, u_mask = np.isin(y_true, seen), np.isin(y_true, unseen)
    s = per_class_accuracy(y_true[s_mask], pred[s_mask], seen)
    u = per_class_accuracy(y_true[u_mask], pred[u_mask], unseen)
    return {"gzsl_seen": s, "gzsl_unseen": u, "gzsl_h": harmonic_mean(s, u)}
