"""Adversarial losses as pure functions of D's logits (StudioGAN ``utils/losses.py`` conventions).

Each entry of :data:`GAN_LOSSES` is an :class:`AdversarialLoss` with ``d_loss(real, fake)`` and
``g_loss(fake)``; logits are (B,) tensors s = D(·) before any sigmoid.

- vanilla (non-saturating): L_D = E softplus(−s_r) + E softplus(s_f);  L_G = E softplus(−s_f)
- hinge:                    L_D = E relu(1−s_r) + E relu(1+s_f);      L_G = −E s_f
- ls (least squares):       L_D = ½E(s_r−1)² + ½E s_f²;               L_G = ½E(s_f−1)²
- wgan / wgan_gp:           L_D = E s_f − E s_r;                      L_G = −E s_f
  (``wgan_gp`` is the same pair; :mod:`fmlab.gan.step` adds the gradient penalty, λ = 10.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F

from fmlab.registry import Registry


def d_vanilla(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def g_vanilla(fake: torch.Tensor) -> torch.Tensor:
    return F.softplus(-fake).mean()


def d_hinge(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()


def g_hinge(fake: torch.Tensor) -> torch.Tensor:
    return -fake.mean()


def d_ls(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    return 0.5 * (real - 1.0).pow(2).mean() + 0.5 * fake.pow(2).mean()


def g_ls(fake: torch.Tensor) -> torch.Tensor:
    return 0.5 * (fake - 1.0).pow(2).mean()


def d_wasserstein(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    return fake.mean() - real.mean()


def g_wasserstein(fake: torch.Tensor) -> torch.Tensor:
    return -fake.mean()


class AdversarialLoss(NamedTuple):
    d_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    g_loss: Callable[[torch.Tensor], torch.Tensor]


GAN_LOSSES: Registry[AdversarialLoss] = Registry("GAN loss")
GAN_LOSSES.add("vanilla", AdversarialLoss(d_vanilla, g_vanilla))
GAN_LOSSES.add("hinge", AdversarialLoss(d_hinge, g_hinge))
GAN_LOSSES.add("ls", AdversarialLoss(d_ls, g_ls))
GAN_LOSSES.add("wgan", AdversarialLoss(d_wasserstein, g_wasserstein))
GAN_LOSSES.add("wgan_gp", AdversarialLoss(d_wasserstein, g_wasserstein))


def get_loss(name: str) -> AdversarialLoss:
    """Look a loss pair up by name; unknown names raise an error listing the known ones."""
    return GAN_LOSSES.get(name)
