"""Normalised mutual information of attention maps (UNIP, papers.md 34): is a layer's attention
local, global or hybrid?

For one attention matrix A (N queries × N keys, rows sum to 1) take the joint distribution
p(q, k) = A_qk / N (queries uniform). Then

    NMI = I(Q; K) / sqrt(H(Q) · H(K)),   H(Q) = log N,   H(K) = −Σ_k p(k) log p(k),

with p(k) = Σ_q A_qk / N. Each query attending only to itself (a local, identity-like pattern)
gives NMI = 1; every query attending the same way (uniform, or all to one key: a global pattern)
gives NMI = 0 (defined as 0 when H(K) = 0). Values in between are the "hybrid" layers UNIP distils.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["attention_nmi"]


def attention_nmi(attn: Tensor, eps: float = 1e-12) -> Tensor:
    """NMI of attention maps ``(..., N, N)`` (rows are distributions over keys), one per map.

    Args:
        attn: attention probabilities; leading dimensions (batch, heads) are kept.
        eps: guards log(0) (terms with zero probability contribute 0).

    Returns:
        ``(...)`` NMI values in [0, 1].

    Examples:
        >>> n = 16
        >>> float(attention_nmi(torch.eye(n)))  # local: each query attends to itself
        1.0
        >>> float(attention_nmi(torch.full((n, n), 1 / n)))  # global: uniform
        0.0
    """
    a = attn.double()
    n = a.shape[-1]
    if a.shape[-2] != n:
        raise ValueError(f"attention maps must be square (..., N, N), got {tuple(a.shape)}")
    joint = a / n
    pk = joint.sum(-2)  # (..., N) key marginal
    pq = 1.0 / n
    ratio = joint / (pq * pk.unsqueeze(-2)).clamp_min(eps)
    mi = (joint * torch.log(ratio.clamp_min(eps))).where(joint > 0, torch.zeros((), dtype=a.dtype)).sum((-2, -1))
    hk = -(pk * torch.log(pk.clamp_min(eps))).where(pk > 0, torch.zeros((), dtype=a.dtype)).sum(-1)
    denom = torch.sqrt(math.log(n) * hk)
    nmi = torch.where(denom > eps, mi / denom.clamp_min(eps), torch.zeros_like(mi))
    return nmi.clamp(0.0, 1.0).to(attn.dtype if attn.is_floating_point() else torch.float32)
