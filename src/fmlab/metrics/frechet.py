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

    N >= 2 is required: one sample has no covariance.
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
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), computed in float64."""
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
    """FID between two (N, D) feature sets (each needs N >= 2)."""
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

    ``classes`` defaults to every label present in the real set; each class needs at least two
    real and two fake samples. Returns ``{"mean": float, "per_class": {class: fid}}``.
    """
    pairs = split_by_class(real_features, real_labels, fake_features, fake_labels, classes,
                           metric="intra-FID", min_per_class=2, need="at least 2")
    per_class = {c: frechet_distance(*feature_statistics(r), *feature_statistics(f))
                 for c, r, f in pairs}
    return {"mean": float(np.mean(list(per_class.values()))), "per_class": per_class}
