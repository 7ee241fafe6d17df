"""Adversarial losses as pure functions of D's logits (StudioGAN ``utils/losses.py`` conventions).

Each loss is one small class with two static methods, ``d_loss(real, fake)`` and
``g_loss(fake)``, registered where it is defined with ``@register_loss("name")``; logits are
(B,) tensors s = D(·) before any sigmoid. :data:`GAN_LOSSES` maps each name to an
:class:`AdversarialLoss` pair, which is what :mod:`fmlab.gan.step` and ``gan.loss`` in a config
resolve. A new loss is one file with one decorated class (see ``tests/gan/test_contract.py``).

- vanilla (non-saturating): L_D = E softplus(−s_r) + E softplus(s_f);  L_G = E softplus(−s_f)
- hinge:                    L_D = E relu(1−s_r) + E relu(1+s_f);      L_G = −E s_f
- ls (least squares):       L_D = ½E(s_r−1)² + ½E s_f²;               L_G = ½E(s_f−1)²
- wgan / wgan_gp:           L_D = E s_f − E s_r;                      L_G = −E s_f
  (``wgan_gp`` is the same pair; :mod:`fmlab.gan.step` adds the gradient penalty, λ = 10.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, TypeVar

import torch
import torch.nn.functional as F

from fmlab.registry import Registry


class AdversarialLoss(NamedTuple):
    """A registered loss pair: ``d_loss(real_logits, fake_logits)`` and ``g_loss(fake_logits)``.

    ``gp_lambda`` is the gradient-penalty weight the loss is defined with (10 for WGAN-GP, else
    0); the step uses it when the config leaves ``gan.gp_lambda`` unset.
    """

    d_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    g_loss: Callable[[torch.Tensor], torch.Tensor]
    gp_lambda: float = 0.0


GAN_LOSSES: Registry[AdversarialLoss] = Registry("GAN loss")

_L = TypeVar("_L", bound=type)


def register_loss(name: str, *, gp_lambda: float = 0.0) -> Callable[[_L], _L]:
    """Class decorator: register a loss class's ``d_loss``/``g_loss`` pair under ``name``.

    Args:
        name: the name configs use (``gan.loss``); registering a name twice is an error.
        gp_lambda: the gradient-penalty weight the loss is defined with (WGAN-GP: 10).

    Returns:
        A decorator that registers the class and returns it unchanged (stack two to register
        one pair under two names).

    Examples:
        >>> import torch
        >>> @register_loss("doc_ls2")
        ... class DocLS2:
        ...     @staticmethod
        ...     def d_loss(real, fake):
        ...         return (real - 1).pow(2).mean() + fake.pow(2).mean()
        ...     @staticmethod
        ...     def g_loss(fake):
        ...         return (fake - 1).pow(2).mean()
        >>> float(get_loss("doc_ls2").g_loss(torch.zeros(3)))
        1.0
        >>> _ = GAN_LOSSES.remove("doc_ls2")  # keep the registry as shipped
    """
    def deco(cls: _L) -> _L:
        for attr in ("d_loss", "g_loss"):
            if not callable(getattr(cls, attr, None)):
                raise TypeError(f"GAN loss {name!r}: {cls.__name__} needs a static {attr}()")
        GAN_LOSSES.add(name, AdversarialLoss(cls.d_loss, cls.g_loss, float(gp_lambda)))
        return cls

    return deco


def get_loss(name: str) -> AdversarialLoss:
    """Look a loss pair up by name.

    Args:
        name: a registered loss (``vanilla``, ``hinge``, ``ls``, ``wgan``, ``wgan_gp``, ...).

    Returns:
        The :class:`AdversarialLoss` pair.

    Raises:
        fmlab.errors.FmlabError: an unknown name; the message lists the known ones.

    Examples:
        >>> import torch
        >>> hinge = get_loss("hinge")
        >>> float(hinge.d_loss(torch.tensor([2.0]), torch.tensor([-2.0])))  # both margins met
        0.0
        >>> float(hinge.g_loss(torch.tensor([0.5, 1.5])))
        -1.0
    """
    return GAN_LOSSES.get(name)


def loss_names() -> list[str]:
    """The registered loss names, sorted (for help texts and config checks).

    Returns:
        The names.

    Examples:
        >>> loss_names()
        ['hinge', 'ls', 'vanilla', 'wgan', 'wgan_gp']
    """
    return GAN_LOSSES.names()


@register_loss("vanilla")
class Vanilla:
    """Non-saturating GAN (Goodfellow et al. 2014): the usual BCE on logits, G maximises log D."""

    @staticmethod
    def d_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return F.softplus(-real).mean() + F.softplus(fake).mean()

    @staticmethod
    def g_loss(fake: torch.Tensor) -> torch.Tensor:
        return F.softplus(-fake).mean()


@register_loss("hinge")
class Hinge:
    """Hinge loss (Lim & Ye 2017; SNGAN, BigGAN): D is trained only on margin violations."""

    @staticmethod
    def d_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()

    @staticmethod
    def g_loss(fake: torch.Tensor) -> torch.Tensor:
        return -fake.mean()


@register_loss("ls")
class LeastSquares:
    """LSGAN (Mao et al. 2017) with targets 1 (real) and 0 (fake): no vanishing sigmoid gradient."""

    @staticmethod
    def d_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return 0.5 * (real - 1.0).pow(2).mean() + 0.5 * fake.pow(2).mean()

    @staticmethod
    def g_loss(fake: torch.Tensor) -> torch.Tensor:
        return 0.5 * (fake - 1.0).pow(2).mean()


@register_loss("wgan_gp", gp_lambda=10.0)
@register_loss("wgan")
class Wasserstein:
    """The Wasserstein critic pair; ``wgan_gp`` is the same pair plus the step's gradient penalty."""

    @staticmethod
    def d_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return fake.mean() - real.mean()

    @staticmethod
    def g_loss(fake: torch.Tensor) -> torch.Tensor:
        return -fake.mean()
