"""Synthetic symmetric label noise, for studying pre-training on noisy labels (NMTune's analysis).

Convention: each label is, independently with probability p, replaced by a class drawn uniformly
from the C − 1 *other* classes, so the measured flip rate is p itself (the other common
convention draws from all C classes and flips only p·(C−1)/C of the labels). The draws come from
a dedicated seed and are made for every label whatever p is: one uniform u_i decides the flip
(u_i < p) and one offset in 1..C−1 picks the new class, so the same seed gives the same noisy
labels in every run at the same p, and the labels flipped at a smaller p are a subset of those
flipped at a larger one, with the same replacements.
"""

from __future__ import annotations

import math

import numpy as np

from fmlab.errors import ConfigError

__all__ = ["symmetric_label_noise"]


def symmetric_label_noise(labels: np.ndarray, p: float, num_classes: int, seed: int = 0,
                          key: str = "label_noise") -> np.ndarray:
    """Labels with symmetric noise: each flipped with probability ``p`` to a different class.

    Args:
        labels: (N,) integer labels in [0, num_classes).
        p: the flip probability, in [0, 1).
        num_classes: C (≥ 2 when p > 0).
        seed: the noise seed.
        key: the config key named in errors.

    Returns:
        A new (N,) int64 array; ``labels`` is left unchanged.

    Raises:
        ConfigError: p outside [0, 1), or fewer than 2 classes, or labels out of range.

    Examples:
        >>> y = np.zeros(8, dtype=np.int64)
        >>> symmetric_label_noise(y, 0.0, 3).tolist() == y.tolist()
        True
        >>> noisy = symmetric_label_noise(np.arange(1000) % 10, 0.3, 10, seed=1)
        >>> 0.25 < float(np.mean(noisy != np.arange(1000) % 10)) < 0.35
        True
    """
    y = np.asarray(labels).astype(np.int64)
    if not (isinstance(p, (int, float)) and math.isfinite(p) and 0.0 <= p < 1.0):
        raise ConfigError(f"{key}: {p!r} must be a number in [0, 1)")
    if p == 0:
        return y.copy()
    if num_classes < 2:
        raise ConfigError(f"{key}: {p!r} needs at least 2 classes, the data has {num_classes}")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ConfigError(f"{key}: labels must lie in [0, {num_classes}), got "
                          f"[{int(y.min())}, {int(y.max())}]")
    rng = np.random.default_rng(seed)
    flip = rng.random(y.shape[0]) < p
    offset = rng.integers(1, num_classes, size=y.shape[0])
    return np.where(flip, (y + offset) % num_classes, y)
