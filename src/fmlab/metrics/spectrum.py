"""Singular-value spectrum of a feature matrix: singular value entropy (SVE) and LSVR.

NMTune (Chen et al., ICLR 2024) characterises what label noise in pre-training does to a feature
space by the spectrum of the (N, D) matrix of downstream features: σ̂ = σ / Σσ, the
singular value entropy SVE = −Σ σ̂ log σ̂ (high: variance spread over many directions) and
LSVR = −log σ̂₁ (the paper's "largest singular value ratio" as a negative log; high: the top
direction holds a *small* share, so LSVR moves opposite to σ̂₁).

Pre-processing. Rows are L2-normalised (so a few large-norm samples do not dominate), then each
column is centred (so the spectrum is that of the covariance, not dominated by the mean
direction). The official code (``src/models/svd.py``) instead subtracts each row's mean over its
feature dimensions, ``features - features.mean(dim=1)`` (a per-sample mean, probably a quirk;
see docs/notes/issue20_formulas.md §1); ``center="row"`` reproduces it, ``center="none"`` skips
centring. SVE and LSVR were computed offline in the official repo, from the same singular values.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from fmlab.errors import DataError

Center = Literal["column", "row", "none"]

__all__ = ["feature_spectrum", "largest_singular_value_ratio", "load_feature_matrix",
           "singular_value_entropy", "spectrum_metrics"]


def feature_spectrum(features: torch.Tensor | np.ndarray, center: Center = "column",
                     normalize: bool = True) -> torch.Tensor:
    """Singular values (descending, float64) of the pre-processed feature matrix.

    Args:
        features: (N, D) features; (V, N, D) views are stacked into (V·N, D) samples.
        center: ``"column"`` (default: subtract each feature's mean), ``"row"`` (subtract each
            sample's mean, as the official code does) or ``"none"``.
        normalize: L2-normalise rows first.

    Returns:
        (min(N, D),) singular values, largest first.

    Raises:
        DataError: not 2-/3-D, empty, or not finite.

    Examples:
        >>> X = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 2.0], [0.0, -2.0]])
        >>> feature_spectrum(X).tolist()  # rows become ±e_i: an isotropic spectrum
        [1.4142135623730951, 1.4142135623730951]
    """
    X = torch.as_tensor(features).detach().to(torch.float64)
    if X.ndim == 3:
        X = X.reshape(-1, X.shape[-1])
    if X.ndim != 2 or X.numel() == 0:
        raise DataError(f"features must be a non-empty (N, D) matrix, got shape {tuple(X.shape)}")
    if not bool(torch.isfinite(X).all()):
        raise DataError("features contain NaN or infinite values")
    if center not in ("column", "row", "none"):
        raise DataError(f"center must be 'column', 'row' or 'none', got {center!r}")
    if normalize:
        X = X / X.norm(dim=1, keepdim=True).clamp_min(1e-12)
    if center == "column":
        X = X - X.mean(dim=0, keepdim=True)
    elif center == "row":
        X = X - X.mean(dim=1, keepdim=True)
    return torch.linalg.svdvals(X)


def _shares(sigma: torch.Tensor | np.ndarray) -> torch.Tensor:
    s = torch.as_tensor(sigma).detach().to(torch.float64).flatten()
    total = float(s.sum()) if s.numel() else 0.0
    if s.numel() == 0 or not math.isfinite(total) or total <= 0 or bool((s < 0).any()):
        raise DataError("the spectrum is undefined: the singular values are empty, negative or "
                        "all zero (every feature row identical after centring?)")
    return s / total


def singular_value_entropy(sigma: torch.Tensor | np.ndarray) -> float:
    """SVE = −Σ σ̂ᵢ log σ̂ᵢ with σ̂ = σ/Σσ (natural log; 0·log 0 = 0).

    Args:
        sigma: singular values (any order).

    Returns:
        SVE in [0, log(len(sigma))]: 0 for rank 1, log D for D equal values.

    Examples:
        >>> round(singular_value_entropy([1.0, 1.0, 1.0, 1.0]), 6) == round(math.log(4), 6)
        True
        >>> singular_value_entropy([3.0, 0.0])
        0.0
    """
    p = _shares(sigma)
    return float(-torch.special.xlogy(p, p).sum()) + 0.0


def largest_singular_value_ratio(sigma: torch.Tensor | np.ndarray) -> float:
    """LSVR = −log(σ₁/Σσ), the paper's definition (a negative log of the top share).

    Args:
        sigma: singular values (any order; the largest is used).

    Returns:
        LSVR ≥ 0: 0 for rank 1, log D for D equal values.

    Examples:
        >>> largest_singular_value_ratio([2.0, 0.0, 0.0])
        0.0
        >>> round(largest_singular_value_ratio([1.0, 1.0]), 6) == round(math.log(2), 6)
        True
    """
    p = _shares(sigma)
    return float(-torch.log(p.max())) + 0.0


def spectrum_metrics(features: torch.Tensor | np.ndarray, center: Center = "column",
                     normalize: bool = True) -> dict[str, float | int | str]:
    """SVE, LSVR and the top share σ̂₁ of a feature matrix (see :func:`feature_spectrum`).

    Args:
        features: (N, D) or (V, N, D) features.
        center: the centring (``"column"``, ``"row"``, ``"none"``).
        normalize: L2-normalise rows first.

    Returns:
        ``{"sve", "lsvr", "top_share", "n", "d", "center"}``.

    Examples:
        >>> m = spectrum_metrics(torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]]))
        >>> round(m["sve"], 4), round(m["lsvr"], 4), m["top_share"]
        (0.6931, 0.6931, 0.5)
    """
    sigma = feature_spectrum(features, center, normalize)
    shape = torch.as_tensor(features).shape
    p = _shares(sigma)
    return {"sve": singular_value_entropy(sigma), "lsvr": largest_singular_value_ratio(sigma),
            "top_share": float(p.max()), "n": int(math.prod(shape[:-1])), "d": int(shape[-1]),
            "center": center}


def load_feature_matrix(path: str | os.PathLike) -> torch.Tensor:
    """Features from a file: an ``fmlab features extract`` file, a ``.npy`` array, or a
    safetensors file holding a ``features`` tensor or a single tensor.

    Args:
        path: the file.

    Returns:
        The (N, D) or (V, N, D) features as stored.

    Raises:
        DataError: missing, unreadable, or holding no feature matrix (names the file).
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: feature file not found")
    try:
        if p.suffix == ".npy":
            arr = np.load(p, allow_pickle=False)
            if arr.dtype.kind not in "fiu":
                raise ValueError(f"dtype {arr.dtype} is not numeric")
            X = torch.from_numpy(np.array(arr, dtype=np.float64))
        else:
            from safetensors import safe_open

            with safe_open(str(p), framework="pt") as f:
                keys = list(f.keys())
                if "features" in keys:
                    X = f.get_tensor("features")
                elif len(keys) == 1:
                    X = f.get_tensor(keys[0])
                else:
                    raise ValueError(f"no 'features' tensor among {keys}")
    except Exception as e:  # noqa: BLE001  (any reader failure is the file's fault)
        raise DataError(f"{p}: not a readable feature file ({e})") from None
    if X.ndim not in (2, 3) or X.numel() == 0:
        raise DataError(f"{p}: features must be (N, D) or (V, N, D), got shape {tuple(X.shape)}")
    return X
