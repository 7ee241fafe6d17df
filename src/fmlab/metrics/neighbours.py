"""Precision, recall, density and coverage (Naeem et al. 2020), computed in blocks.

With NND_k(x) the distance from x to its k-th nearest neighbour in its own set (self excluded),
real features X (N) and fake features Y (M), and the strict ``<`` of the reference ``prdc``
package:

    precision = mean_j 1[exists i: d(Y_j, X_i) < NND_k(X_i)]
    recall    = mean_i 1[exists j: d(X_i, Y_j) < NND_k(Y_j)]
    density   = 1/(kM) sum_j sum_i 1[d(Y_j, X_i) < NND_k(X_i)]
    coverage  = mean_i 1[min_j d(X_i, Y_j) < NND_k(X_i)]

The reference builds three full N x M float64 matrices (about 20 GB each at 50k x 50k). Here
distances are formed ``block`` rows at a time (squared, from ||a||^2 + ||b||^2 - 2ab, which keeps
the work in BLAS) and reduced at once, so memory stays near ``block_bytes`` whatever N and M are.
Comparing squared distances gives the same answers as comparing distances.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from fmlab.errors import DataError
from fmlab.metrics._checks import as_features, check_same_dim

_DTYPES = {"float64": torch.float64, "float32": torch.float32}


def _sq_dists(a: torch.Tensor, a_sq: torch.Tensor, b: torch.Tensor, b_sq: torch.Tensor
              ) -> torch.Tensor:
    """Squared Euclidean distances between rows of a and b, clamped at zero."""
    d = torch.addmm(b_sq.unsqueeze(0), a, b.T, beta=1.0, alpha=-2.0)
    d.add_(a_sq.unsqueeze(1))
    return d.clamp_(min=0.0)


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
    """
    x_sq = (x * x).sum(1)
    out = torch.empty(x.shape[0], dtype=x.dtype)
    rows = _block_rows(x.shape[0], block_bytes, x.element_size())
    for s in range(0, x.shape[0], rows):
        d = _sq_dists(x[s:s + rows], x_sq[s:s + rows], x, x_sq)
        out[s:s + rows] = torch.topk(d, k + 1, dim=1, largest=False, sorted=True).values[:, k]
    return out


def prdc(
    real_features: Any,
    fake_features: Any,
    k: int = 5,
    block_bytes: int = 64 << 20,
    dtype: str = "float64",
) -> dict[str, float]:
    """Precision, recall, density and coverage of fake features against real ones.

    ``block_bytes`` bounds one block of the distance matrix (peak memory is a small multiple
    of it); ``dtype="float32"`` halves time and memory at the cost of exactness near ties.
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
        inside_count = 0      # pairs (j, i) with fake j inside real ball i -> density
        fake_inside_any = 0   # fakes inside at least one real ball -> precision
        nearest_fake = torch.full((n,), float("inf"), dtype=tdt)  # -> coverage
        real_covered = torch.zeros(n, dtype=torch.bool)           # -> recall
        rows = _block_rows(n, block_bytes, real.element_size())
        for s in range(0, m, rows):
            d = _sq_dists(fake[s:s + rows], fake_sq[s:s + rows], real, real_sq)  # (b, n)
            per_fake = (d < real_nnd.unsqueeze(0)).sum(1)
            inside_count += int(per_fake.sum())
            fake_inside_any += int((per_fake > 0).sum())
            torch.minimum(nearest_fake, d.min(0).values, out=nearest_fake)
            real_covered |= (d < fake_nnd[s:s + rows].unsqueeze(1)).any(0)
            del d
    return {
        "precision": fake_inside_any / m,
        "recall": float(real_covered.double().mean()),
        "density": inside_count / (k * m),
        "coverage": float((nearest_fake < real_nnd).double().mean()),
    }

