"""SVD helpers shared by SVFit and PELA: weights as matrices, ranks by energy or budget.

A conv kernel (out, in/groups, k...) is read as the matrix (out, in/groups·k...) so one code path
serves Linear, Conv1d/2d/3d and attention projections. The SVD runs in float64 so that the
factors (and hence a replayed adapter) do not depend on float32 rounding in the solver.
"""

from __future__ import annotations

import hashlib
import math

import torch
from torch import Tensor


def as_matrix(weight: Tensor) -> Tensor:
    """(out, ...) → (out, prod(...)); a view when possible."""
    return weight.reshape(weight.shape[0], -1)


def svd(matrix: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Thin SVD ``M = U diag(S) Vh`` in float64 (U: m×k, S: k, Vh: k×n, k = min(m, n))."""
    u, s, vh = torch.linalg.svd(matrix.detach().to(torch.float64), full_matrices=False)
    return u, s, vh


def energy_rank(s: Tensor, energy: float) -> int:
    """Smallest r whose top-r singular values hold at least ``energy`` of Σσ² (at least 1)."""
    sq = s.to(torch.float64) ** 2
    total = float(sq.sum())
    if total <= 0.0:
        return 1
    frac = torch.cumsum(sq, 0) / total
    r = int(torch.searchsorted(frac, torch.tensor(energy - 1e-12, dtype=frac.dtype)).item()) + 1
    return max(1, min(r, s.numel()))


def budget_rank(d_in: int, d_out: int, ratio: float) -> int:
    """PELA's rank for a compression ratio: ⌊d_in·d_out / (ratio·(d_in + d_out))⌋, ≤ min(d_in, d_out).

    The two factors then hold r·(d_in + d_out) ≈ d_in·d_out / ratio weights.
    """
    r = math.floor(d_in * d_out / (ratio * (d_in + d_out)))
    return min(r, d_in, d_out)


def tensor_sha256(t: Tensor) -> str:
    """Hash of a tensor's exact bytes (dtype and shape included)."""
    flat = t.detach().to("cpu").contiguous().reshape(-1)
    h = hashlib.sha256(f"{flat.dtype}|{tuple(t.shape)}|".encode())
    h.update(flat.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
