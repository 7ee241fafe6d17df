"""Stage-2 repulsion: push the generator's parameters away from the negatively adapted θ_N.

Distance (the paper's "mean squared difference"): for anchors θ_N^(1..M) and the K named
parameter tensors, d(θ) = (1/M) Σ_i (1/K) Σ_k mean((θ[k] − θ_N^(i)[k])²). The reference code
multiplies this by M/2; a constant factor only rescales γ and is absorbed by the normalisation
below.

Normalisation (our choice, see the issue's scale hint): with γ = 1 and the raw d ≈ 1e-6 the
repulsion is inert, so the losses use d̂ = d / d₀, where d₀ is d at the start of stage 2
(θ = θ_G). d̂ starts at 1 whatever the architecture or how far adaptation moved, so γ has the
same meaning across runs:

- NL2: R = −γ·d̂        (linear, unbounded push)
- EL2: R = exp(−γ·d̂)   (push that fades once far away)
- IL2: R = γ / d̂       (strong near θ_N, fading)

All three have −∇R ∝ +∇d̂, i.e. a descent step moves θ away from every θ_N.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from fmlab.errors import ConfigError
from fmlab.registry import Registry

REPULSIONS: Registry[Callable[[torch.Tensor, float], torch.Tensor]] = Registry("repulsion")
REPULSIONS.add("nl2", lambda d, gamma: -gamma * d)
REPULSIONS.add("el2", lambda d, gamma: torch.exp(-gamma * d))
REPULSIONS.add("il2", lambda d, gamma: gamma / d)


def param_distance(params: dict[str, torch.Tensor],
                   anchors: Sequence[dict[str, torch.Tensor]]) -> torch.Tensor:
    """d = mean over anchors of the mean over tensors of the per-tensor MSE (differentiable)."""
    if not anchors:
        raise ConfigError("param_distance: need at least one adapted model θ_N")
    total = None
    for anchor in anchors:
        per = [(params[k] - a).pow(2).mean() for k, a in anchor.items()]
        term = torch.stack(per).mean()
        total = term if total is None else total + term
    return total / len(anchors)


def repulsion(d: torch.Tensor, kind: str, gamma: float) -> torch.Tensor:
    """R(d) for ``kind`` in nl2 | el2 | il2 (d already normalised, see the module docstring)."""
    return REPULSIONS.get(kind)(d, gamma)


class Repulsion:
    """R(d(θ)/d₀) for a module, with d₀ measured once when built (at θ_G)."""

    def __init__(self, module: nn.Module, anchors: Sequence[dict[str, torch.Tensor]],
                 kind: str = "nl2", gamma: float = 1.0, scale: float | None = None) -> None:
        REPULSIONS.get(kind)
        if gamma < 0:
            raise ConfigError(f"repulsion gamma must be >= 0, got {gamma}")
        self.kind, self.gamma = kind, float(gamma)
        self.anchors = [{k: v.detach() for k, v in a.items()} for a in anchors]
        params = dict(module.named_parameters())
        missing = [k for k in self.anchors[0] if k not in params] if self.anchors else []
        if missing:
            raise ConfigError(f"repulsion: anchor parameters {missing[:5]} not in the module")
        if scale is None:
            with torch.no_grad():
                scale = float(param_distance(params, self.anchors))
        if not scale > 0:
            raise ConfigError("repulsion: the generator equals the adapted model (d0 = 0); "
                              "stage 1 did not move it, so there is nothing to repel from")
        self.d0 = float(scale)

    def __call__(self, module: nn.Module) -> tuple[torch.Tensor, dict[str, float]]:
        d = param_distance(dict(module.named_parameters()), self.anchors) / self.d0
        r = repulsion(d, self.kind, self.gamma)
        return r, {"d_norm": float(d.detach()), "repulsion": float(r.detach())}
