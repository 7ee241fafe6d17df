"""Kernel Inception Distance: unbiased MMD^2 with the cubic polynomial kernel, over subsets.

k(x, y) = (x.y / d + 1)^3. For subsets X, Y of m samples each,

    MMD^2_u = sum_{i!=j} k(x_i, x_j) / (m(m-1)) + sum_{i!=j} k(y_i, y_j) / (m(m-1))
              - 2 sum_{i,j} k(x_i, y_j) / m^2.

Unlike FID it is unbiased in the sample count, so small sets can be compared; the subset spread
(std) says how much to trust the mean. Subsets are drawn without replacement within a subset,
independently for real and fake, from one seeded generator (defaults follow the common
100 subsets x 1000 samples).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fmlab.errors import DataError
from fmlab.metrics._checks import as_features, check_same_dim
from fmlab.metrics._types import MeanStd


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The KID kernel matrix (x.y/d + 1)^3 between the rows of x and y.

    Args:
        x: (N, D) float array.
        y: (M, D) float array.

    Returns:
        The (N, M) kernel matrix.

    Examples:
        >>> import numpy as np
        >>> polynomial_kernel(np.array([[1.0, 1.0]]), np.array([[1.0, 1.0], [0.0, 0.0]]))
        array([[8., 1.]])
    """
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 between two equally sized samples with the polynomial kernel.

    Args:
        x: (m, D) float array, m >= 2.
        y: (m, D) float array (same m and D).

    Returns:
        The unbiased estimate; it can be slightly negative when the distributions agree.

    Examples:
        >>> import numpy as np
        >>> x = np.random.default_rng(0).normal(size=(50, 4))
        >>> mmd2_unbiased(x, x + 3.0) > 1.0
        True
    """
    m = x.shape[0]
    kxx = polynomial_kernel(x, x)
    kyy = polynomial_kernel(y, y)
    kxy = polynomial_kernel(x, y)
    within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(within - 2.0 * kxy.sum() / (m * m))


def kid(
    real_features: Any,
    fake_features: Any,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> MeanStd:
    """KID: mean and std of the unbiased MMD^2 over random subsets of both sets.

    Unlike FID it has no small-sample bias, so it is the metric for a few hundred samples; the
    std over subsets says how far to trust the mean.

    Args:
        real_features: (N, D) reference features.
        fake_features: (M, D) generated features, same D.
        subsets: number of random subsets (>= 1).
        subset_size: samples per subset and side (>= 2, at most min(N, M)).
        seed: seed of the subset draws; the same seed gives the same value.

    Returns:
        :class:`~fmlab.metrics.MeanStd` ``(mean, std)`` over the subsets.

    Raises:
        DataError: bad counts (the message names ``subsets``/``subset_size``), different
            dimensions, or a NaN/inf feature.

    Examples:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> real = rng.normal(size=(200, 3))
        >>> far = kid(real, rng.normal(loc=1.0, size=(200, 3)), subsets=10, subset_size=50)
        >>> near = kid(real, rng.normal(size=(200, 3)), subsets=10, subset_size=50)
        >>> far.mean > 10 * abs(near.mean)
        True
        >>> mean, std = far  # a MeanStd is a tuple
    """
    if subsets < 1:
        raise DataError(f"KID: subsets must be >= 1, got {subsets}")
    if subset_size < 2:
        raise DataError(f"KID: subset_size must be >= 2, got {subset_size}")
    real = as_features(real_features, "real features", min_rows=1)
    fake = as_features(fake_features, "fake features", min_rows=1)
    check_same_dim(real, fake, "real features", "fake features")
    for name, arr in (("real", real), ("fake", fake)):
        if subset_size > arr.shape[0]:
            raise DataError(
                f"KID: subset_size={subset_size} exceeds the {arr.shape[0]} {name} samples; "
                "lower subset_size or provide more samples"
            )
    rng = np.random.default_rng(seed)
    values = np.empty(subsets, dtype=np.float64)
    for s in range(subsets):
        xi = rng.choice(real.shape[0], subset_size, replace=False)
        yi = rng.choice(fake.shape[0], subset_size, replace=False)
        values[s] = mmd2_unbiased(real[xi], fake[yi])
    return MeanStd(float(values.mean()), float(values.std()))
