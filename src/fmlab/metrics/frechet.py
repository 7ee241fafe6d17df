"""Fréchet distance between Gaussians fitted to features (FID) and its per-class mean (intra-FID).

FID = ||mu1 - mu2||^2 + Tr(S1) + Tr(S2) - 2 Tr((S1 S2)^(1/2)).

The trace of the matrix square root is computed from eigenvalues, not with ``scipy.linalg.sqrtm``:
S1 S2 is not symmetric, but it is similar to the symmetric PSD matrix F^T S2 F for any factor
S1 = F F^T, so Tr((S1 S2)^(1/2)) = sum_i sqrt(lambda_i(F^T S2 F)). A symmetric eigen-solver is
accurate, never returns complex numbers, and is several times faster than ``sqrtm`` (which also
changed behaviour across SciPy releases; see the algorithm notes §3.1). F is the Cholesky factor
of whichever of S1, S2 is positive definite (the eigenvalues of S1 S2 and S2 S1 agree) and
V sqrt(W) from ``eigh`` when both are singular (fewer samples than dimensions on both sides);
tiny negative eigenvalues from round-off are clipped to zero.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fmlab.errors import DataError
from fmlab.metrics._checks import (
    as_features,
    check_finite,
    check_same_dim,
    split_by_class,
    to_numpy,
)


def feature_statistics(features: Any) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased (N-1) covariance of (N, D) features, both float64.

    These are the Gaussian statistics FID compares; caching them (see
    :func:`~fmlab.metrics.reference_statistics`) is what makes a reference set cheap to reuse.

    Args:
        features: (N, D) array-like or torch tensor, N >= 2 (one sample has no covariance).

    Returns:
        ``(mu, sigma)``: the (D,) mean and the (D, D) covariance.

    Raises:
        DataError: fewer than two rows, a non-2-D or non-numeric array, or a NaN/inf value.

    Examples:
        >>> import numpy as np
        >>> mu, sigma = feature_statistics(np.array([[0.0, 0.0], [2.0, 2.0], [4.0, 0.0]]))
        >>> mu
        array([2.        , 0.66666667])
        >>> sigma
        array([[4.        , 0.        ],
               [0.        , 1.33333333]])
    """
    x = as_features(features, "features", min_rows=2)
    mu = x.mean(axis=0)
    sigma = np.cov(x, rowvar=False)
    return mu, np.atleast_2d(sigma)


def _as_stats(mu: Any, sigma: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    m = np.asarray(to_numpy(mu), dtype=np.float64)
    s = np.asarray(to_numpy(sigma), dtype=np.float64)
    if m.ndim != 1:
        raise DataError(f"{name}: mean must be 1-D, got shape {m.shape}")
    if s.shape != (m.shape[0], m.shape[0]):
        raise DataError(
            f"{name}: covariance shape {s.shape} does not match mean of length {m.shape[0]}"
        )
    check_finite(m, f"{name} mean")
    check_finite(s, f"{name} covariance")
    return m, s


def _cholesky(sigma: np.ndarray) -> np.ndarray | None:
    try:
        return np.linalg.cholesky(sigma)
    except np.linalg.LinAlgError:
        return None


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """Tr((sigma1 sigma2)^(1/2)) for symmetric PSD matrices, via a symmetric eigenproblem.

    S1 S2 and S2 S1 have the same eigenvalues, so whichever matrix is positive definite is
    factored by Cholesky (cheap); only when both are singular (fewer samples than dimensions
    on both sides) is the factor V sqrt(W) taken from ``eigh``.

    Args:
        sigma1: (D, D) symmetric positive semi-definite float64 matrix.
        sigma2: (D, D) symmetric positive semi-definite float64 matrix.

    Returns:
        The trace of the principal square root of ``sigma1 @ sigma2``.

    Examples:
        >>> import numpy as np
        >>> trace_sqrt_product(np.diag([1.0, 4.0]), np.diag([9.0, 1.0]))  # sqrt(9) + sqrt(4)
        5.0
    """
    s1 = (sigma1 + sigma1.T) / 2.0
    s2 = (sigma2 + sigma2.T) / 2.0
    f = _cholesky(s1)
    if f is None:
        f = _cholesky(s2)
        if f is not None:
            s1, s2 = s2, s1
        else:
            w, v = np.linalg.eigh(s1)
            f = v * np.sqrt(np.clip(w, 0.0, None))
    m = f.T @ (s2 @ f)
    m = (m + m.T) / 2.0
    eig = np.linalg.eigvalsh(m)
    return float(np.sqrt(np.clip(eig, 0.0, None)).sum())


def frechet_distance(mu1: Any, sigma1: Any, mu2: Any, sigma2: Any) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), computed in float64.

    Use it with precomputed statistics (a cached reference, :class:`~fmlab.metrics.FeatureStats`);
    :func:`fid` is the same number straight from two feature sets.

    Args:
        mu1: (D,) mean of the first Gaussian.
        sigma1: (D, D) covariance of the first Gaussian.
        mu2: (D,) mean of the second Gaussian.
        sigma2: (D, D) covariance of the second Gaussian.

    Returns:
        ||mu1 - mu2||^2 + Tr(S1) + Tr(S2) - 2 Tr((S1 S2)^(1/2)), clipped at 0 (round-off).

    Raises:
        DataError: shapes that do not fit, different dimensions, or a NaN/inf entry.

    Examples:
        Shifting the mean by (1, 1) costs ||(1, 1)||^2 = 2; scaling the covariance from I to 4I
        costs 2 (1 + 4 - 2 * 2) = 2:

        >>> import numpy as np
        >>> frechet_distance(np.zeros(2), np.eye(2), np.ones(2), np.eye(2))
        2.0
        >>> frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), 4 * np.eye(2))
        2.0
    """
    m1, s1 = _as_stats(mu1, sigma1, "first statistics")
    m2, s2 = _as_stats(mu2, sigma2, "second statistics")
    if m1.shape != m2.shape:
        raise DataError(
            f"feature dimensions differ: first statistics have {m1.shape[0]}, "
            f"second have {m2.shape[0]}"
        )
    diff = m1 - m2
    value = diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * trace_sqrt_product(s1, s2)
    # Round-off can push a zero distance a hair below zero; a distance is never negative.
    return float(max(value, 0.0))


def fid(real_features: Any, fake_features: Any) -> float:
    """FID between two (N, D) feature sets: the Fréchet distance of their Gaussian fits.

    The value depends on the extractor, its weights, the resize rule and the sample counts
    (FID is biased upwards for small N); compare only numbers that share a protocol
    (:func:`~fmlab.metrics.metric_protocol`).

    Args:
        real_features: (N, D) reference features, N >= 2 (array-like or torch tensor).
        fake_features: (M, D) generated features, M >= 2, same D.

    Returns:
        The FID as a float (0 for identical statistics).

    Raises:
        DataError: too few rows, different feature dimensions, or a NaN/inf value.

    Examples:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> real = rng.normal(size=(200, 3))
        >>> round(fid(real, real), 6)
        0.0
        >>> round(fid(real, rng.normal(loc=1.0, size=(200, 3))), 2)  # about ||shift||^2 = 3
        2.99
    """
    real = as_features(real_features, "real features", min_rows=2)
    fake = as_features(fake_features, "fake features", min_rows=2)
    check_same_dim(real, fake, "real features", "fake features")
    return frechet_distance(*feature_statistics(real), *feature_statistics(fake))


def intra_fid(
    real_features: Any,
    real_labels: Any,
    fake_features: Any,
    fake_labels: Any,
    classes: Any = None,
) -> dict[str, Any]:
    """FID per class between real and generated features of that class, and their mean.

    The class-conditional FID (Miyato & Koyama 2018): a conditional generator that ignores its
    label can have a good pooled FID and a poor intra-FID.

    Args:
        real_features: (N, D) reference features.
        real_labels: (N,) integer class of each reference row.
        fake_features: (M, D) generated features.
        fake_labels: (M,) the class each generated sample was made for.
        classes: the classes to evaluate; default every label present in the real set. Each
            needs at least two real and two fake samples.

    Returns:
        ``{"mean": float, "per_class": {class: fid}}``.

    Raises:
        DataError: a class with fewer than two real or fake samples (the message names it),
            or bad features/labels.

    Examples:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> real, fake = rng.normal(size=(200, 3)), rng.normal(loc=1.0, size=(200, 3))
        >>> labels = np.arange(200) % 2
        >>> out = intra_fid(real, labels, fake, labels)
        >>> sorted(out["per_class"])
        [0, 1]
        >>> round(out["mean"], 3)
        3.114
    """
    pairs = split_by_class(real_features, real_labels, fake_features, fake_labels, classes,
                           metric="intra-FID", min_per_class=2, need="at least 2")
    per_class = {c: frechet_distance(*feature_statistics(r), *feature_statistics(f))
                 for c, r, f in pairs}
    return {"mean": float(np.mean(list(per_class.values()))), "per_class": per_class}
