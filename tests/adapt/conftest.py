"""Shared synthetic features: a Gaussian mixture that few-shot methods can learn from."""

from __future__ import annotations

import numpy as np
import pytest


def gaussian_mixture(n_per_class: int, n_classes: int, dim: int, seed: int,
                     spread: float = 1.0, means: np.ndarray | None = None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(X, y, class means): class means on a sphere of radius 3, isotropic noise ``spread``."""
    rng = np.random.default_rng(seed)
    if means is None:
        means = rng.normal(size=(n_classes, dim))
        means *= 3.0 / np.linalg.norm(means, axis=1, keepdims=True)
    y = np.repeat(np.arange(n_classes), n_per_class)
    X = means[y] + spread * rng.normal(size=(len(y), dim))
    perm = rng.permutation(len(y))
    return X[perm], y[perm], means


@pytest.fixture
def mixture():
    return gaussian_mixture
