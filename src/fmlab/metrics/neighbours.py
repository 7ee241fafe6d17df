"""Precision, recall, density and coverage (Naeem et al. 2020), computed in blocks.

With NND_k(x) the distance from x to its k-th nearest neighbour in its own set (self excluded),
real features X (N) and fake features Y (M), and the strict ``<`` of the reference ``prdc``
package:

    precision = mean_j 1[exists i: d(Y_j, X_i) < NND_k(X_i)]
    recall    = mean_i 1[exists j: d(X_i, Y_j) < NND_k(Y_j)]
    density   = 1/(kM) sum_j sum_i 1[d(Y_j, X_i) < NND_k(X_i)]
    coverage  = mean_i 1[min_j d(X_i, Y_j) < NND_k(X_i)]

The reference builds three full N x M float64 matrices (about 20 GB each at 50k x 50k). Here
squared distances are formed a block of rows at a time (from ||a||^2 + ||b||^2 - 2ab, which keeps
the work in BLAS) and reduced at once, so memory stays near ``block_bytes`` whatever N and M are.
Comparing squared distances gives the same answers as comparing distances. Like the reference
(sklearn's ``euclidean_distances`` uses the same expansion), distances that tie to within
floating-point round-off may resolve either way; for quantised features (integers) every
quantity is exact and ties resolve as with exact distances.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from fmlab.errors import DataError
from fmlab.metrics._checks import as_features, check_same_dim, split_by_class

_DTYPES = {"float64": torch.float64, "float32": torch.float32}


def _cross(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """bias - 2 a b^T in one BLAS call.

    A squared distance is ||a_i||^2 + ||b_j||^2 - 2 a_i.b_j. Reductions along one axis (top-k or
    min along a row, a min down a column) and thresholds per row or column only need the norm
    that varies along the reduced axis inside the block (passed as ``bias``); the other is a
    constant added once after the reduction. That saves two passes over every block.
    """
    return torch.addmm(bias, a, b.T, alpha=-2.0)


def _coarse(v: np.ndarray, bits: int = 8) -> np.ndarray:
    """Round every entry of v to ``bits`` significant binary digits."""
    mant, expo = np.frexp(v)
    return np.ldexp(np.round(mant * (1 << bits)), expo - bits)


def _block_rows(n_cols: int, block_bytes: int, itemsize: int) -> int:
    return max(1, block_bytes // (max(n_cols, 1) * itemsize))


def kth_nn_sq_distance(x: torch.Tensor, k: int, block_bytes: int = 64 << 20) -> torch.Tensor:
    """Squared distance from every row of x to its k-th nearest other row (self excluded).

    Taking the (k+1)-th smallest distance *including* the zero self-distance matches the
    reference exactly, duplicates included.

    Args:
        x: (N, D) float tensor, N > k.
        k: which neighbour (1 = nearest other row).
        block_bytes: memory bound of one block of the distance matrix.

    Returns:
        (N,) squared distances.

    Examples:
        >>> import torch
        >>> kth_nn_sq_distance(torch.tensor([[0.0], [1.0], [3.0]], dtype=torch.float64), k=1)
        tensor([1., 1., 4.], dtype=torch.float64)
    """
    x_sq = (x * x).sum(1)
    out = torch.empty(x.shape[0], dtype=x.dtype)
    rows = _block_rows(x.shape[0], block_bytes, x.element_size())
    for s in range(0, x.shape[0], rows):
        g = _cross(x[s:s + rows], x, x_sq.unsqueeze(0))  # row i: d_ij^2 - ||x_i||^2
        kth = torch.topk(g, k + 1, dim=1, largest=False, sorted=True).values[:, k]
        out[s:s + rows] = (kth + x_sq[s:s + rows]).clamp_(min=0.0)
    return out


def prdc(
    real_features: Any,
    fake_features: Any,
    k: int = 5,
    block_bytes: int = 64 << 20,
    dtype: str = "float64",
) -> dict[str, float]:
    """Precision, recall, density and coverage of fake features against real ones.

    Precision and density say how many fakes look real (fidelity); recall and coverage how much
    of the real distribution the fakes reach (diversity). Formulas: the module docstring.

    Args:
        real_features: (N, D) reference features, N > k.
        fake_features: (M, D) generated features, M > k, same D.
        k: the neighbour that sets each sample's ball radius (Naeem et al. use 5).
        block_bytes: bound on one block of the distance matrix (peak memory is a small
            multiple of it), whatever N and M are.
        dtype: ``"float64"`` (exact, default) or ``"float32"`` (half the time and memory, may
            resolve near-ties differently).

    Returns:
        ``{"precision", "recall", "density", "coverage"}`` as floats (density can exceed 1).

    Raises:
        DataError: ``k < 1``, an unknown ``dtype``, too few rows, or bad features.

    Examples:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> real = rng.normal(size=(200, 3))
        >>> prdc(real, real, k=3)
        {'precision': 1.0, 'recall': 1.0, 'density': 1.00..., 'coverage': 1.0}
        >>> shifted = prdc(real, rng.normal(loc=1.0, size=(200, 3)), k=3)
        >>> shifted["precision"] < 1.0 and shifted["coverage"] < 1.0
        True
    """
    if k < 1:
        raise DataError(f"PRDC: k must be >= 1, got {k}")
    if dtype not in _DTYPES:
        raise DataError(f"PRDC: dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    real_np = as_features(real_features, "real features", min_rows=k + 1)
    fake_np = as_features(fake_features, "fake features", min_rows=k + 1)
    check_same_dim(real_np, fake_np, "real features", "fake features")
    tdt = _DTYPES[dtype]
    real = torch.from_numpy(real_np).to(tdt)
    fake = torch.from_numpy(fake_np).to(tdt)
    # Centre both sets on (roughly) the real mean: distances are unchanged and the round-off of
    # the ||a||^2 + ||b||^2 - 2ab form shrinks with the norms. The centre keeps 8 significant
    # bits so that quantised features (integers, fixed-point) stay exact and ties under the
    # strict `<` resolve as with exact distances.
    centre = torch.from_numpy(_coarse(real_np.mean(0))).to(tdt)
    real, fake = real - centre, fake - centre

    with torch.no_grad():
        real_nnd = kth_nn_sq_distance(real, k, block_bytes)
        fake_nnd = kth_nn_sq_distance(fake, k, block_bytes)
        real_sq, fake_sq = (real * real).sum(1), (fake * fake).sum(1)
        n, m = real.shape[0], fake.shape[0]
        # In a block g_ji = d(Y_j, X_i)^2 - ||X_i||^2, so each test moves ||X_i||^2 across.
        in_ball = real_nnd - real_sq          # g_ji < in_ball_i  <=>  Y_j inside real ball i
        inside_count = 0                      # pairs (j, i) with Y_j in real ball i -> density
        fake_inside_any = 0                   # fakes inside at least one real ball -> precision
        nearest = torch.full((n,), float("inf"), dtype=tdt)  # min_j g_ji -> coverage
        margin = torch.full((n,), float("inf"), dtype=tdt)   # min_j g_ji - NND(Y_j)^2 -> recall
        rows = _block_rows(n, block_bytes, real.element_size())
        for s in range(0, m, rows):
            g = _cross(fake[s:s + rows], real, fake_sq[s:s + rows].unsqueeze(1))  # (b, n)
            per_fake = (g < in_ball).sum(1)
            inside_count += int(per_fake.sum())
            fake_inside_any += int((per_fake > 0).sum())
            torch.minimum(nearest, g.amin(0), out=nearest)
            g.sub_(fake_nnd[s:s + rows].unsqueeze(1))
            torch.minimum(margin, g.amin(0), out=margin)
            del g
        covered = (nearest + real_sq).clamp_(min=0.0) < real_nnd
        recalled = (margin + real_sq) < 0.0
    return {
        "precision": fake_inside_any / m,
        "recall": float(recalled.double().mean()),
        "density": inside_count / (k * m),
        "coverage": float(covered.double().mean()),
    }


PRDC_KEYS = ("precision", "recall", "density", "coverage")


def intra_prdc(
    real_features: Any,
    real_labels: Any,
    fake_features: Any,
    fake_labels: Any,
    k: int = 5,
    classes: Any = None,
    block_bytes: int = 64 << 20,
    dtype: str = "float64",
) -> dict[str, Any]:
    """PRDC per class, between the real samples of class y and the fakes made for y.

    The class-conditional counterpart of :func:`prdc`, as :func:`~fmlab.metrics.intra_fid` is of
    FID. Its recall (and coverage) is the measure of *intra-class diversity*: a conditional
    generator that draws one good "3" for every z given y = 3 has high per-class precision and
    near-zero per-class recall. Its precision also checks the labels, which pooled PRDC cannot:
    good digits under the wrong labels score well pooled and near zero per class. ``classes``
    defaults to every label of the real set; each class needs more than ``k`` real and fake
    samples.

    Args:
        real_features: (N, D) reference features.
        real_labels: (N,) integer class of each reference row.
        fake_features: (M, D) generated features.
        fake_labels: (M,) the class each generated sample was made for.
        k: neighbour for the ball radii, as in :func:`prdc`.
        classes: classes to evaluate; default every label of the real set.
        block_bytes: memory bound of one distance block, as in :func:`prdc`.
        dtype: ``"float64"`` or ``"float32"``, as in :func:`prdc`.

    Returns:
        ``{"precision": mean over classes, "recall": .., "density": .., "coverage": ..,
        "per_class": {class: {"precision": .., ...}}}``.

    Raises:
        DataError: a class with ``k`` or fewer real or fake samples (named in the message).

    Examples:
        Fakes that are real samples of the right class score 1; the same fakes under swapped
        labels still score 1 pooled, but not per class:

        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> real = np.concatenate([rng.normal(size=(50, 2)), rng.normal(loc=10, size=(50, 2))])
        >>> y = np.repeat([0, 1], 50)
        >>> intra_prdc(real, y, real, y, k=3)["precision"]
        1.0
        >>> intra_prdc(real, y, real, 1 - y, k=3)["precision"], prdc(real, real, k=3)["precision"]
        (0.0, 1.0)
    """
    pairs = split_by_class(real_features, real_labels, fake_features, fake_labels, classes,
                           metric="intra-PRDC", min_per_class=k + 1, need=f"more than k={k}")
    per_class = {c: prdc(r, f, k=k, block_bytes=block_bytes, dtype=dtype) for c, r, f in pairs}
    out: dict[str, Any] = {key: float(np.mean([v[key] for v in per_class.values()]))
                           for key in PRDC_KEYS}
    out["per_class"] = per_class
    return out
