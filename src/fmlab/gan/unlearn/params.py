"""Parameter-space helpers: named float parameters of a generator and the extrapolation baseline.

Adapt-then-Unlearn works on θ as a set of named tensors (θ_G the pre-trained generator, θ_N the
one adapted to the negatives), so these helpers take and return plain ``{name: tensor}`` dicts
that line up with ``G.named_parameters()`` and ``G.state_dict()``.
"""

from __future__ import annotations

import torch
from torch import nn

from fmlab.errors import ModelError


def param_snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    """Detached copies of the trainable parameters, by name (the θ* of EWC, the θ_N anchors)."""
    return {n: p.detach().clone() for n, p in module.named_parameters() if p.requires_grad}


def check_same_names(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor],
                     what: str) -> None:
    """Raise a ModelError naming the first key or shape that differs between two tensor dicts."""
    missing, extra = sorted(set(a) - set(b)), sorted(set(b) - set(a))
    if missing or extra:
        raise ModelError(f"{what}: parameter names differ (only in the first: {missing[:5]}, "
                         f"only in the second: {extra[:5]})")
    for k in a:
        if a[k].shape != b[k].shape:
            raise ModelError(f"{what}: shape mismatch at {k!r}: {tuple(a[k].shape)} vs "
                             f"{tuple(b[k].shape)}")


def extrapolate(theta_n: dict[str, torch.Tensor], theta_g: dict[str, torch.Tensor],
                gamma: float) -> dict[str, torch.Tensor]:
    """θ_N + γ(θ_G − θ_N) for every floating tensor (γ = 1 gives θ_G, γ = 0 gives θ_N, γ > 1
    moves past θ_G away from the negatives). Integer tensors (counters) are taken from θ_G."""
    check_same_names(theta_n, theta_g, "extrapolate")
    out = {}
    for k, g in theta_g.items():
        n = theta_n[k]
        out[k] = n + gamma * (g - n) if g.is_floating_point() else g.clone()
    return out
