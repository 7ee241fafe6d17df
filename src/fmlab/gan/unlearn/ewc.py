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
    parameters (all trainable ones, or those in ``names``). D gets no gradient.

    One backward pass per sample (the empirical Fisher needs per-sample gradients), so ``n``
    sets the cost; D's ``requires_grad`` flags are restored afterwards.

    Args:
        G: the pre-trained generator.
        D: its discriminator (conditional ones get G's sampled labels).
        n: number of samples z (>= 1).
        generator: torch RNG for z and labels; None uses the global one.
        names: restrict to these parameter names (default: every trainable one).

    Returns:
        name -> tensor F_i of the parameter's shape, non-negative.

    Raises:
        ConfigError: ``n < 1`` or an unknown parameter name.

    Examples:
        >>> from fmlab.gan import create_discriminator, create_generator
        >>> _ = torch.manual_seed(0)
        >>> G = create_generator("mlp", z_dim=4, hidden=8, img_shape=(1, 4, 4))
        >>> D = create_discriminator("mlp", hidden=8, img_shape=(1, 4, 4))
        >>> F = fisher_diagonal(G, D, n=2, generator=torch.Generator().manual_seed(0))
        >>> sorted(F) == sorted(k for k, _ in G.named_parameters())
        True
        >>> all(bool((f >= 0).all()) for f in F.values())
        True
    """
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
    """(λ/2) Σ_i F_i (θ_i − θ*_i)² over the parameters named in ``fisher`` (differentiable).

    Args:
        module: the generator being adapted.
        anchor: name -> θ* (the pre-trained values).
        fisher: name -> F (from :func:`fisher_diagonal`); only these names are penalised.
        lam: the strength λ.

    Returns:
        A scalar tensor.

    Raises:
        ConfigError: an empty ``fisher``.

    Examples:
        >>> from torch import nn
        >>> m = nn.Linear(1, 1, bias=False)
        >>> with torch.no_grad():
        ...     _ = m.weight.fill_(3.0)
        >>> ewc_penalty(m, {"weight": torch.ones(1, 1)}, {"weight": torch.full((1, 1), 2.0)}, 0.5)
        tensor(2., grad_fn=<MulBackward0>)
    """
    params = dict(module.named_parameters())
    total = None
    for k, f in fisher.items():
        term = (f * (params[k] - anchor[k]).pow(2)).sum()
        total = term if total is None else total + term
    if total is None:
        raise ConfigError("ewc_penalty: the Fisher dict is empty")
    return 0.5 * lam * total
