"""The generator and discriminator contracts every GAN net follows.

The contract is what lets losses, conditioning heads and regularisers stay independent of the
architecture: a generator maps (z, y) to images in [-1, 1]; a discriminator splits into
``embed(x) -> φ`` (all blocks) and ``classify(φ, y) -> DOutput`` (the epilogue), because
AdaptiveMix mixes embeddings and needs the epilogue on its own.

A new architecture is one file: subclass :class:`Generator` / :class:`Discriminator` and put
``@register_generator("name")`` / ``@register_discriminator("name")`` on the class (timm's
``@register_model``); ``fmlab.gan.nets`` imports the shipped files so their decorators run, and
configs (``model.generator``), ``--arch`` and the factories resolve the name through the registry.
Sizes are checked in the constructors (:func:`check_sizes`), so a bad ``z_dim`` or ``ch`` from
any caller (CLI, config, code) is a :class:`~fmlab.errors.ConfigError` naming the argument,
not a torch error about a negative dimension.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import nn

from fmlab.errors import DataError
from fmlab.gan.conditioning import ConditionHead, check_labels, maybe_sn
from fmlab.registry import Registry
from fmlab.utils.validation import check, int_at_least

GENERATORS: Registry[Callable[..., Generator]] = Registry("generator")
DISCRIMINATORS: Registry[Callable[..., Discriminator]] = Registry("discriminator")

_Net = TypeVar("_Net", bound=type)


def register_generator(name: str) -> Callable[[_Net], _Net]:
    """Class decorator: make a :class:`Generator` subclass buildable as ``create_generator(name)``.

    Args:
        name: the registry name used by configs (``model.generator``) and ``--arch``.

    Returns:
        A decorator that registers the class and returns it unchanged.

    Examples:
        >>> from fmlab.gan.nets import GENERATORS
        >>> "dcgan" in GENERATORS
        True
    """
    return GENERATORS.register(name)  # type: ignore[return-value]


def register_discriminator(name: str) -> Callable[[_Net], _Net]:
    """Class decorator: make a :class:`Discriminator` subclass buildable by name.

    Args:
        name: the registry name used by configs (``model.discriminator``).

    Returns:
        A decorator that registers the class and returns it unchanged.
    """
    return DISCRIMINATORS.register(name)  # type: ignore[return-value]


def check_sizes(who: str, minimum: int = 1, **sizes: Any) -> list[int]:
    """Each size as an ``int`` >= ``minimum``, or a ConfigError naming the net and the argument.

    Args:
        who: the net's class name, for the message.
        minimum: the smallest allowed value (1 for widths, 0 for ``num_classes``).
        **sizes: the constructor arguments to check, e.g. ``z_dim=128, ch=64``.

    Returns:
        The values as ints, in the order given.

    Examples:
        >>> check_sizes("DCGANGenerator", z_dim=8, ch=4)
        [8, 4]
        >>> check_sizes("MLPGenerator", z_dim=-1)
        Traceback (most recent call last):
        ...
        fmlab.errors.ConfigError: MLPGenerator z_dim: -1 must be an integer >= 1
    """
    return [int_at_least(f"{who} {k}", v, minimum) for k, v in sizes.items()]


def check_img_shape(who: str, img_shape: Any) -> tuple[int, int, int]:
    """``img_shape`` as a (channels, height, width) tuple of ints >= 1, else a ConfigError."""
    check(isinstance(img_shape, (tuple, list)) and len(img_shape) == 3, f"{who} img_shape",
          img_shape, "must be (channels, height, width)")
    c, h, w = check_sizes(who, channels=img_shape[0], height=img_shape[1], width=img_shape[2])
    return c, h, w


@dataclass
class DOutput:
    """What one discriminator pass yields.

    logits: (B,) adversarial logit (projection term included).
    embedding: (B, F) φ(x), the input to the epilogue.
    cls_logits: (B, K) for AC heads, (B, 2K) for ADC, else None.
    """

    logits: torch.Tensor
    embedding: torch.Tensor
    cls_logits: torch.Tensor | None = None


class Generator(nn.Module):
    """Base class: ``G(z, y=None) -> (B, C, H, W)`` images in [-1, 1].

    A subclass builds its layers after ``super().__init__`` (which checks the sizes) and
    implements ``forward(z, y)``, starting with ``y = self._check(z, y)``.

    Args:
        z_dim: latent size (>= 1).
        num_classes: classes of a conditional G (0: unconditional).
        img_shape: (channels, height, width) of the output, each >= 1.
    """

    z_dim: int
    num_classes: int
    img_shape: tuple[int, int, int]

    def __init__(self, z_dim: int, num_classes: int, img_shape: tuple[int, int, int]) -> None:
        super().__init__()
        who = type(self).__name__
        self.z_dim = check_sizes(who, z_dim=z_dim)[0]
        self.num_classes = check_sizes(who, 0, num_classes=num_classes)[0]
        self.img_shape = check_img_shape(who, img_shape)

    def sample_z(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """z ~ N(0, I) of shape (n, z_dim) on G's device, drawn from ``generator`` on the CPU."""
        z = torch.randn(n, self.z_dim, generator=generator)
        return z.to(self._device())

    def sample_labels(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor | None:
        """Uniform class labels (n,) for a conditional G, else None."""
        if self.num_classes <= 0:
            return None
        return torch.randint(0, self.num_classes, (n,), generator=generator).to(self._device())

    def _check(self, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor | None:
        if z.dim() != 2 or z.shape[1] != self.z_dim:
            raise DataError(f"{type(self).__name__}: z must have shape (B, {self.z_dim}), "
                            f"got {tuple(z.shape)}")
        return check_labels(y, self.num_classes, type(self).__name__)

    def _device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        return torch.device("cpu")


class Discriminator(nn.Module):
    """Base class: ``D(x, y=None) -> DOutput``; subclasses implement :meth:`embed`.

    The epilogue is ψ (a linear map φ → 1 logit) plus a :class:`ConditionHead` chosen by ``cond``
    (default: ``"proj"`` when ``num_classes > 0``, else ``"none"``).

    Args:
        feature_dim: size F of the embedding φ(x) that :meth:`embed` returns (>= 1).
        num_classes: classes of a conditional D (0: unconditional).
        cond: a registered conditioning (:data:`fmlab.gan.conditioning.CONDITIONINGS`).
        sn: spectral normalisation on ψ and the head.
        own_psi: build ψ here (False when the subclass provides :meth:`adv_logit`).
    """

    feature_dim: int
    num_classes: int
    cond: str

    def __init__(self, feature_dim: int, num_classes: int = 0, cond: str | None = None,
                 sn: bool = True, own_psi: bool = True) -> None:
        super().__init__()
        who = type(self).__name__
        num_classes = check_sizes(who, 0, num_classes=num_classes)[0]
        if cond is None:  # projection is the usual default for a conditional D
            cond = "proj" if num_classes > 0 else "none"
        self.feature_dim = check_sizes(who, feature_dim=feature_dim)[0]
        self.cond = cond
        self.head = ConditionHead(feature_dim, num_classes, cond, sn=sn)
        self.num_classes = self.head.num_classes
        if own_psi:
            self.psi = maybe_sn(nn.Linear(feature_dim, 1), sn)

    def embed(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def adv_logit(self, phi: torch.Tensor) -> torch.Tensor:
        """ψ(φ): the unconditional logit, shape (B,)."""
        return self.psi(phi).squeeze(1)

    def classify(self, phi: torch.Tensor, y: torch.Tensor | None = None) -> DOutput:
        """The epilogue on a (possibly mixed) embedding φ."""
        logits, cls = self.head(phi, y, self.adv_logit(phi))
        return DOutput(logits=logits, embedding=phi, cls_logits=cls)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> DOutput:
        return self.classify(self.embed(x), y)

    def _check_x(self, x: torch.Tensor, img_shape: tuple[int, int, int]) -> None:
        if x.dim() != 4 or tuple(x.shape[1:]) != tuple(img_shape):
            raise DataError(f"{type(self).__name__}: images must have shape (B, "
                            f"{', '.join(map(str, img_shape))}), got {tuple(x.shape)}")
