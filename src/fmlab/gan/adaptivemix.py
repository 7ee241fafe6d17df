"""AdaptiveMix ("Improving GAN Training via Feature Space Shrinkage", Liu et al. CVPR 2023).

For a batch x_a and a shuffled copy x_b = x_a[perm], with one λ ~ Beta(α, α) per batch (α = 1):
  x_m   = λ x_a + (1−λ) x_b
  z_mix = λ f(x_a) + (1−λ) f(x_b),  target z̃ = z_mix + N(0, σ²), σ = 0.05, held fixed (stop-grad)
  L_mix = −mean cos(f(x_m), z̃)      added to D's real and fake losses and to G's loss
  logits = classify(z_mix) + classify(f(x_m))   (what the official code feeds the adversarial loss)
where f = ``D.embed`` and classify = ``D.classify`` (the epilogue). Shrinking the mixed "hard"
samples onto the mix of the easy ones bounds D's feature space.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from fmlab.gan.nets.base import Discriminator, DOutput


@dataclass
class AdaptiveMixOutput:
    """What the AdaptiveMix discriminator pass returns: D's logits on the mixed batch, the
    embedding-alignment loss that shrinks the feature space, and what the step needs to reuse
    (the mixing weight, the shuffle, D's plain output for conditioning heads)."""

    logits: torch.Tensor            # (B,) classify(z_mix) + classify(f(x_m))
    loss: torch.Tensor              # scalar −mean cos(f(x_m), z̃)
    lam: float
    perm: torch.Tensor              # (B,) the shuffle
    mixed_embedding: torch.Tensor   # f(x_m), with grad
    target: torch.Tensor            # z̃, detached
    plain: DOutput                  # D's ordinary output on x_a (for conditioning heads, CR)


def sample_mix(batch: int, generator: torch.Generator | None = None,
               alpha: float = 1.0) -> tuple[float, torch.Tensor]:
    """λ ~ Beta(α, α) and a permutation of the batch, both drawn from ``generator``.

    torch's Beta sampler takes no generator, so a numpy generator is seeded from the torch one:
    the same torch seed gives the same λ.
    """
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    lam = float(np.random.default_rng(seed).beta(alpha, alpha))
    perm = torch.randperm(batch, generator=generator)
    return lam, perm


def shrinkage_loss(mixed_embedding: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """−mean over the batch of cos(flatten f(x_m), stopgrad(target))."""
    b = mixed_embedding.shape[0]
    return -F.cosine_similarity(mixed_embedding.reshape(b, -1),
                                target.detach().reshape(b, -1), dim=1).mean()


def adaptive_mix(D: Discriminator, x: torch.Tensor, y: torch.Tensor | None = None,
                 generator: torch.Generator | None = None, alpha: float = 1.0,
                 noise_std: float = 0.05, embedding: torch.Tensor | None = None
                 ) -> AdaptiveMixOutput:
    """One AdaptiveMix pass of D over the batch ``x`` (labels ``y`` follow x_a into the epilogue).

    ``embedding`` may pass f(x) already computed. f(x_b) is taken as f(x_a)[perm], which equals
    D.embed(x_b) because fmlab's discriminators have no batch-coupled layers (no BatchNorm).
    """
    lam, perm = sample_mix(x.shape[0], generator, alpha)
    perm = perm.to(x.device)
    f_a = D.embed(x) if embedding is None else embedding
    x_m = lam * x + (1.0 - lam) * x[perm]
    f_m = D.embed(x_m)
    z_mix = lam * f_a + (1.0 - lam) * f_a[perm]
    noise = torch.randn(z_mix.shape, generator=generator).to(z_mix.device, z_mix.dtype)
    target = (z_mix + noise_std * noise).detach()
    logits = D.classify(z_mix, y).logits + D.classify(f_m, y).logits
    return AdaptiveMixOutput(logits=logits, loss=shrinkage_loss(f_m, target), lam=lam,
                             perm=perm, mixed_embedding=f_m, target=target,
                             plain=D.classify(f_a, y))
