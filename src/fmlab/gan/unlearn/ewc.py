"""Elastic weight consolidation for the adaptation stage (Li et al. 2020, as used by
Adapt-then-Unlearn stage 1).

Fine-tuning G on a handful of negatives would forget everything else; EWC anchors each
parameter to its pre-trained value θ* in proportion to how much the discriminator's verdict on
generated samples depends on it: F_i = E_z[(∂D(G(z))/∂θ_i)²] (the diagonal empirical Fisher, one
gradient per sample), penalty (λ/2) Σ_i F_i (θ_i − θ*_i)².
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from fmlab.errors import ConfigError
from fmlab.gan.nets.base import Discriminator, Generator


def fisher_diagonal(G: Generator, D: Discriminator, n: int = 32,
                    generator: torch.Generator | None = None,
                    names: Iterable[str] | None = None) -> dict[str, torch.Tensor]:
    """Mean over ``n`` samples z of the squared gradient of D's logit D(G(z)) w.r.t. G's
    parameters (all trainable ones, or those in ``names``). D gets no gradient."""
    if n < 1:
        raise ConfigError(f"fisher: number of samples must be >= 1, got {n}")
    params = {k: p for k, p in G.named_parameters() if p.requires_grad}
    if names is not None:
        names = list(names)
        unknown = [k for k in names if k not in params]
        if unknown:
            raise ConfigError(f"fisher: unknown generator parameter(s) {unknown[:5]}; known: "
                              f"{', '.join(list(params)[:10])}")
        params = {k: params[k] for k in names}
    fisher = {k: torch.zeros_like(p) for k, p in params.items()}
    d_flags = [p.requires_grad for p in D.parameters()]
    D.requires_grad_(False)
    try:
        z = G.sample_z(n, generator)
        y = G.sample_labels(n, generator)
        for i in range(n):
            yi = None if y is None else y[i:i + 1]
            logit = D(G(z[i:i + 1], yi), yi if D.num_classes else None).logits.sum()
            grads = torch.autograd.grad(logit, list(params.values()))
            for k, g in zip(params, grads):
                fisher[k] += g.detach().pow(2)
    finally:
        for p, f in zip(D.parameters(), d_flags):
            p.requires_grad_(f)
    return {k: f / n for k, f in fisher.items()}


def ewc_penalty(module: nn.Module, anchor: dict[str, torch.Tensor],
                fisher: dict[str, torch.Tensor], lam: float) -> torch.Tensor:
    """(λ/2) Σ_i F_i (θ_i − θ*_i)² over the parameters named in ``fisher`` (differentiable)."""
    params = dict(module.named_parameters())
    total = None
    for k, f in fisher.items():
        term = (f * (params[k] - anchor[k]).pow(2)).sum()
        total = term if total is None else total + term
    if total is None:
        raise ConfigError("ewc_penalty: the Fisher dict is empty")
    return 0.5 * lam * total
