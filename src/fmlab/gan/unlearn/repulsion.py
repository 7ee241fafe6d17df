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

A new repulsion is one function ``(d_norm, gamma) -> R`` registered here with
``@REPULSIONS.register("name")``; ``fmlab gan unlearn --repulsion`` lists the registry.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from fmlab.errors import ConfigError
from fmlab.registry import Registry
from fmlab.utils.validation import finite_float

REPULSIONS: Registry[Callable[[torch.Tensor, float], torch.Tensor]] = Registry("repulsion")


@REPULSIONS.register("nl2")
def nl2(d: torch.Tensor, gamma: float) -> torch.Tensor:
    """Negative L2: R = −γ·d̂, a linear push that never fades.

    Examples:
        >>> nl2(torch.tensor(2.0), 0.5)
        tensor(-1.)
    """
    return -gamma * d


@REPULSIONS.register("el2")
def el2(d: torch.Tensor, gamma: float) -> torch.Tensor:
    """Exponential L2: R = exp(−γ·d̂), a push that fades once θ is far from θ_N.

    Examples:
        >>> el2(torch.tensor(0.0), 3.0)
        tensor(1.)
    """
    return torch.exp(-gamma * d)


@REPULSIONS.register("il2")
def il2(d: torch.Tensor, gamma: float) -> torch.Tensor:
    """Inverse L2: R = γ / d̂, strongest near θ_N.

    Examples:
        >>> il2(torch.tensor(4.0), 2.0)
        tensor(0.5000)
    """
    return gamma / d


def param_distance(params: dict[str, torch.Tensor],
                   anchors: Sequence[dict[str, torch.Tensor]]) -> torch.Tensor:
    """d = mean over anchors of the mean over tensors of the per-tensor MSE (differentiable).

    Args:
        params: name -> tensor of the model being trained (gradients flow through these).
        anchors: one or more name -> tensor snapshots θ_N (only their names are compared).

    Returns:
        A scalar tensor.

    Raises:
        ConfigError: no anchors.

    Examples:
        >>> w = {"w": torch.zeros(2)}
        >>> param_distance(w, [{"w": torch.ones(2)}, {"w": torch.full((2,), 3.0)}])  # (1 + 9) / 2
        tensor(5.)
    """
    if not anchors:
        raise ConfigError("param_distance: need at least one adapted model θ_N")
    total = None
    for anchor in anchors:
        per = [(params[k] - a).pow(2).mean() for k, a in anchor.items()]
        term = torch.stack(per).mean()
        total = term if total is None else total + term
    return total / len(anchors)


def repulsion(d: torch.Tensor, kind: str, gamma: float) -> torch.Tensor:
    """R(d) for a registered ``kind`` (nl2 | el2 | il2), d already normalised.

    Args:
        d: the normalised distance d̂ = d / d₀ (scalar tensor).
        kind: a name in :data:`REPULSIONS`.
        gamma: the strength γ.

    Returns:
        The repulsion term R, to be added to the generator loss.

    Raises:
        FmlabError: an unknown ``kind`` (the message lists the known ones).

    Examples:
        >>> repulsion(torch.tensor(1.0), "nl2", 2.0)
        tensor(-2.)
    """
    return REPULSIONS.get(kind)(d, gamma)


class Repulsion:
    """R(d(θ)/d₀) for a module, with d₀ measured once when built (at θ_G).

    Args:
        module: the generator being unlearnt (its named parameters are compared).
        anchors: the adapted models θ_N, as name -> tensor snapshots.
        kind: a name in :data:`REPULSIONS`.
        gamma: strength γ, a finite number >= 0 (NaN is refused: it would train the generator
            into NaN weights, reliability probe F1).
        scale: d₀; default the distance of ``module`` to the anchors now.

    Raises:
        ConfigError: an unknown kind, a negative or non-finite gamma, anchor names the module
            lacks, or d₀ = 0 (the module equals the anchors).

    Examples:
        >>> from torch import nn
        >>> g = nn.Linear(2, 1)
        >>> anchor = {k: v.detach() + 0.1 for k, v in g.named_parameters()}
        >>> r, logs = Repulsion(g, [anchor], "nl2", gamma=1.0)(g)
        >>> round(logs["d_norm"], 6), round(logs["repulsion"], 6)  # d̂ = 1 at the start
        (1.0, -1.0)
        >>> Repulsion(g, [anchor], gamma=float("nan"))
        Traceback (most recent call last):
        ...
        fmlab.errors.ConfigError: repulsion gamma: nan must be a finite number
    """

    def __init__(self, module: nn.Module, anchors: Sequence[dict[str, torch.Tensor]],
                 kind: str = "nl2", gamma: float = 1.0, scale: float | None = None) -> None:
        REPULSIONS.get(kind)
        gamma = finite_float("repulsion gamma", gamma, low=0.0)
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
        """``(R, {"d_norm", "repulsion"})`` for the module's current parameters."""
        d = param_distance(dict(module.named_parameters()), self.anchors) / self.d0
        r = repulsion(d, self.kind, self.gamma)
        return r, {"d_norm": float(d.detach()), "repulsion": float(r.detach())}
