"""Semantic-segmentation metrics: per-class IoU and their mean (mIoU).

Pure functions of two integer class maps, so a workflow can score any model's argmax output
against ground truth without touching the model.
"""

from __future__ import annotations

import numpy as np
import torch

from fmlab.errors import DataError
from fmlab.utils.validation import positive_int


def _as_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def confusion_matrix(pred, target, num_classes: int) -> np.ndarray:
    """Pixel confusion matrix ``M[t, p]`` = pixels of true class ``t`` predicted as ``p``.

    Args:
        pred: integer class map(s), any shape (tensor or array).
        target: integer class map(s) of the same shape.
        num_classes: classes ``0 .. num_classes-1`` (background included when it is a class).

    Returns:
        int64 ``(num_classes, num_classes)``.

    Examples:
        >>> confusion_matrix([0, 1, 1], [0, 1, 0], 2).tolist()
        [[1, 1], [0, 1]]
    """
    num_classes = positive_int("num_classes", num_classes)
    p, t = _as_numpy(pred).astype(np.int64).ravel(), _as_numpy(target).astype(np.int64).ravel()
    if p.shape != t.shape:
        raise DataError(f"pred: {_as_numpy(pred).shape} has not the shape of target {_as_numpy(target).shape}")
    for key, v in (("pred", p), ("target", t)):
        if v.size and (v.min() < 0 or v.max() >= num_classes):
            raise DataError(f"{key}: values in [{v.min()}, {v.max()}] fall outside 0..{num_classes - 1}")
    return np.bincount(t * num_classes + p, minlength=num_classes**2).reshape(num_classes, num_classes)


def iou_per_class(pred, target, num_classes: int) -> np.ndarray:
    """IoU of each class, ``|P ∩ T| / |P ∪ T|``; NaN for a class absent from both maps.

    Args:
        pred: integer class map(s).
        target: integer class map(s) of the same shape.
        num_classes: number of classes.

    Returns:
        float64 ``(num_classes,)``.

    Examples:
        >>> iou_per_class([0, 1, 1, 1], [0, 0, 1, 1], 3).round(3).tolist()
        [0.5, 0.667, nan]
    """
    m = confusion_matrix(pred, target, num_classes).astype(np.float64)
    inter = np.diag(m)
    union = m.sum(0) + m.sum(1) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.maximum(union, 1), np.nan)


def mean_iou(pred, target, num_classes: int, ignore_background: bool = False) -> float:
    """Mean IoU over the classes present in ``pred`` or ``target`` (absent classes are skipped).

    Args:
        pred: integer class map(s), e.g. the argmax of a segmentation head, (B,H,W) or (H,W).
        target: the ground-truth map(s), same shape; class 0 is background.
        num_classes: number of classes including background.
        ignore_background: leave class 0 out of the mean (its pixels still count as errors
            for the other classes).

    Returns:
        mIoU in [0, 1]; NaN when no class is present.

    Examples:
        >>> mean_iou([[0, 1], [1, 1]], [[0, 1], [1, 1]], 2)
        1.0
        >>> mean_iou([0, 0, 1, 1], [1, 1, 0, 0], 2)
        0.0
    """
    iou = iou_per_class(pred, target, num_classes)
    if ignore_background:
        iou = iou[1:]
    present = iou[~np.isnan(iou)]
    return float(present.mean()) if present.size else float("nan")
