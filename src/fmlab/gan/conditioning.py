"""Class conditioning: conditional BatchNorm for G, discriminator heads and their losses.

StudioGAN's taxonomy treats conditioning as its own axis, so it lives here and not inside the nets:
any generator can use :class:`ConditionalBatchNorm2d` / :class:`LinearConditionalBatchNorm2d`, and
any discriminator ends in a :class:`ConditionHead` over its embedding φ(x).

Each D head is one :class:`Conditioning` class registered where it is defined with
``@register_conditioning("name")``: it builds its layers on the :class:`ConditionHead`, maps
(φ, y, ψ(φ)) to the logit and class logits, and owns its D and G loss terms. A new head is one
decorated class; ``cond=`` in the nets, ``model.cond`` in configs, :func:`cond_d_loss` and
:func:`cond_g_loss` resolve it through :data:`CONDITIONINGS`.

D heads (``cond``):
- ``"none"``: unconditional, only the adversarial logit ψ(φ).
- ``"proj"`` (projection D): s = ψ(φ) + ⟨embed(y), φ⟩.
- ``"ac"`` (AC-GAN): a K-way classifier C(φ); D trains C on reals *and* fakes.
- ``"acmod"`` (StudioGAN's ACGAN-Mod): same head, but D trains C on reals only.
- ``"adc"`` (ADC-GAN): a 2K-way classifier; the real class y is index 2y, the fake class y is 2y+1.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from fmlab.errors import ConfigError, DataError
from fmlab.registry import Registry


def maybe_sn(module: nn.Module, sn: bool) -> nn.Module:
    """Wrap a layer's ``weight`` in spectral normalisation when ``sn`` (parametrization API)."""
    if sn:
        return nn.utils.parametrizations.spectral_norm(module)
    return module


def check_labels(y: torch.Tensor | None, num_classes: int, who: str) -> torch.Tensor | None:
    """Validate class labels early so a bad label names itself instead of an index error deep in."""
    if num_classes <= 0:
        return None
    if y is None:
        raise DataError(f"{who} is conditional on {num_classes} classes and needs labels y")
    if y.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise DataError(f"{who}: labels must be integers, got dtype {y.dtype}")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise DataError(
            f"{who}: labels must lie in [0, {num_classes}), got range "
            f"[{int(y.min())}, {int(y.max())}]"
        )
    return y.long()


class ConditionalBatchNorm2d(nn.Module):
    """BatchNorm without affine, then a per-class gain and bias (init 1 and 0).

    Used by DCGAN/SNGAN generators; with ``num_classes == 0`` it is a plain affine BatchNorm.
    """

    def __init__(self, num_features: int, num_classes: int = 0) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.bn = nn.BatchNorm2d(num_features, affine=num_classes == 0)
        if num_classes > 0:
            self.gain = nn.Embedding(num_classes, num_features)
            self.bias = nn.Embedding(num_classes, num_features)
            nn.init.ones_(self.gain.weight)
            nn.init.zeros_(self.bias.weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.bn(x)
        if self.num_classes == 0:
            return h
        if y is None:
            raise DataError("ConditionalBatchNorm2d needs labels y")
        g = self.gain(y)[:, :, None, None]
        b = self.bias(y)[:, :, None, None]
        return h * g + b


class LinearConditionalBatchNorm2d(nn.Module):
    """BigGAN's BN whose gain (1 + W_g c) and bias (W_b c) are linear in a conditioning vector c.

    c is [z-chunk, shared class embedding] in BigGAN (hierarchical z); for an unconditional
    BigGAN it is the z-chunk alone.
    """

    def __init__(self, num_features: int, cond_dim: int, sn: bool = True) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(num_features, affine=False)
        self.gain = maybe_sn(nn.Linear(cond_dim, num_features, bias=False), sn)
        self.bias = maybe_sn(nn.Linear(cond_dim, num_features, bias=False), sn)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        g = 1.0 + self.gain(c)[:, :, None, None]
        b = self.bias(c)[:, :, None, None]
        return self.bn(x) * g + b


class Conditioning:
    """How a discriminator uses the class label: its head layers, logits and loss terms.

    Subclass it and register the subclass with ``@register_conditioning("name")``. The default
    methods are those of an unconditional head (no layers, the logit unchanged, no loss terms).

    Attributes:
        name: the registered name (set by the decorator).
        needs_classes: whether the head needs ``num_classes > 0`` (False only for ``none``).
    """

    name: str = ""
    needs_classes: bool = True

    def build(self, head: ConditionHead, feature_dim: int, num_classes: int, sn: bool) -> None:
        """Add this kind's layers to ``head`` (their attribute names are part of checkpoints).

        Args:
            head: the :class:`ConditionHead` being built.
            feature_dim: the size F of D's embedding φ.
            num_classes: the number of classes K (0 when ``needs_classes`` is False).
            sn: wrap the layers in spectral normalisation.
        """

    def forward(self, head: ConditionHead, phi: torch.Tensor, y: torch.Tensor | None,
                adv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(logits, cls_logits)`` from the embedding φ, labels y and the plain logit ψ(φ).

        Args:
            head: the head holding this kind's layers.
            phi: (B, F) embedding.
            y: (B,) labels or None.
            adv: (B,) unconditional logit ψ(φ).

        Returns:
            The adversarial logits (B,) and the class logits, or None.
        """
        return adv, None

    def d_loss(self, real_cls: torch.Tensor | None, fake_cls: torch.Tensor | None,
               y_real: torch.Tensor | None, y_fake: torch.Tensor | None) -> torch.Tensor | None:
        """The term D adds (before the λ weight), or None when this head adds none."""
        return None

    def g_loss(self, fake_cls: torch.Tensor | None,
               y_fake: torch.Tensor | None) -> torch.Tensor | None:
        """The term G adds (before the λ weight), or None when this head adds none."""
        return None

    def _need(self, cls: torch.Tensor | None, y: torch.Tensor | None, which: str
              ) -> tuple[torch.Tensor, torch.Tensor]:
        if cls is None or y is None:
            raise ConfigError(f"cond={self.name!r} needs class logits and labels for the "
                              f"{which} batch")
        return cls, y


CONDITIONINGS: Registry[type[Conditioning]] = Registry("discriminator conditioning")
_INSTANCES: dict[type[Conditioning], Conditioning] = {}

_C = TypeVar("_C", bound=type)


def register_conditioning(name: str) -> Callable[[_C], _C]:
    """Class decorator: register a :class:`Conditioning` subclass as ``cond=name``.

    Args:
        name: the name used by ``cond=`` / ``model.cond``.

    Returns:
        A decorator that sets ``cls.name``, registers the class and returns it.

    Examples:
        >>> sorted(CONDITIONINGS)
        ['ac', 'acmod', 'adc', 'none', 'proj']
        >>> ConditionHead(8, 3, "adc").classifier.out_features
        6
    """
    def deco(cls: _C) -> _C:
        cls.name = name
        CONDITIONINGS.add(name, cls)
        return cls

    return deco


def get_conditioning(cond: str) -> Conditioning:
    """The registered conditioning ``cond`` (an instance), or a ConfigError listing the known ones.

    Args:
        cond: a registered name.

    Returns:
        An instance of the registered class.
    """
    if cond not in CONDITIONINGS:
        raise ConfigError(f"unknown discriminator conditioning cond={cond!r}; "
                          f"known: {', '.join(CONDITIONINGS.names())}")
    cls = CONDITIONINGS.get(cond)
    kind = _INSTANCES.get(cls)
    if kind is None:  # heads are stateless: one instance per class, none built per step
        kind = _INSTANCES[cls] = cls()
    return kind


def conditional_kinds() -> list[str]:
    """The registered heads that use labels (every kind but ``none``), e.g. for ``model.cond``.

    Returns:
        The sorted names.
    """
    return [n for n in CONDITIONINGS.names() if CONDITIONINGS.get(n).needs_classes]


@register_conditioning("none")
class NoConditioning(Conditioning):
    """Unconditional: only the adversarial logit ψ(φ)."""

    needs_classes = False


@register_conditioning("proj")
class Projection(Conditioning):
    """Projection D (Miyato & Koyama 2018): s = ψ(φ) + ⟨embed(y), φ⟩."""

    def build(self, head: ConditionHead, feature_dim: int, num_classes: int, sn: bool) -> None:
        head.embed = maybe_sn(nn.Embedding(num_classes, feature_dim), sn)
        nn.init.xavier_uniform_(_weight(head.embed))

    def forward(self, head: ConditionHead, phi: torch.Tensor, y: torch.Tensor | None,
                adv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        y = check_labels(y, head.num_classes, "projection discriminator")
        return adv + (head.embed(y) * phi).sum(dim=1), None


@register_conditioning("ac")
class AuxiliaryClassifier(Conditioning):
    """AC-GAN: a K-way classifier C(φ); D trains C on reals and fakes, G on its fakes.

    L_D = CE(C(x_r), y_r) + CE(C(x_f), y_f);  L_G = CE(C(G(z, y)), y).
    """

    def outputs(self, num_classes: int) -> int:
        """The classifier's width for K classes."""
        return num_classes

    def build(self, head: ConditionHead, feature_dim: int, num_classes: int, sn: bool) -> None:
        head.classifier = maybe_sn(nn.Linear(feature_dim, self.outputs(num_classes)), sn)

    def forward(self, head: ConditionHead, phi: torch.Tensor, y: torch.Tensor | None,
                adv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return adv, head.classifier(phi)

    def d_loss(self, real_cls: torch.Tensor | None, fake_cls: torch.Tensor | None,
               y_real: torch.Tensor | None, y_fake: torch.Tensor | None) -> torch.Tensor | None:
        real_cls, y_real = self._need(real_cls, y_real, "real")
        fake_cls, y_fake = self._need(fake_cls, y_fake, "fake")
        return F.cross_entropy(real_cls, y_real.long()) + F.cross_entropy(fake_cls, y_fake.long())

    def g_loss(self, fake_cls: torch.Tensor | None,
               y_fake: torch.Tensor | None) -> torch.Tensor | None:
        fake_cls, y_fake = self._need(fake_cls, y_fake, "fake")
        return F.cross_entropy(fake_cls, y_fake.long())


@register_conditioning("acmod")
class ACGANMod(AuxiliaryClassifier):
    """StudioGAN's ACGAN-Mod: the AC head, but D trains C on reals only: L_D = CE(C(x_r), y_r)."""

    def d_loss(self, real_cls: torch.Tensor | None, fake_cls: torch.Tensor | None,
               y_real: torch.Tensor | None, y_fake: torch.Tensor | None) -> torch.Tensor | None:
        real_cls, y_real = self._need(real_cls, y_real, "real")
        return F.cross_entropy(real_cls, y_real.long())


@register_conditioning("adc")
class ADC(AuxiliaryClassifier):
    """ADC-GAN (Hou et al. 2022): a 2K-way classifier; real class y is index 2y, fake y is 2y+1.

    L_D = CE(C(x_r), 2y_r) + CE(C(x_f), 2y_f+1);  L_G = CE(C(x_f), 2y) − CE(C(x_f), 2y+1).
    """

    def outputs(self, num_classes: int) -> int:
        return 2 * num_classes

    def d_loss(self, real_cls: torch.Tensor | None, fake_cls: torch.Tensor | None,
               y_real: torch.Tensor | None, y_fake: torch.Tensor | None) -> torch.Tensor | None:
        real_cls, y_real = self._need(real_cls, y_real, "real")
        fake_cls, y_fake = self._need(fake_cls, y_fake, "fake")
        return (F.cross_entropy(real_cls, adc_labels(y_real, fake=False))
                + F.cross_entropy(fake_cls, adc_labels(y_fake, fake=True)))

    def g_loss(self, fake_cls: torch.Tensor | None,
               y_fake: torch.Tensor | None) -> torch.Tensor | None:
        fake_cls, y_fake = self._need(fake_cls, y_fake, "fake")
        return (F.cross_entropy(fake_cls, adc_labels(y_fake, fake=False))
                - F.cross_entropy(fake_cls, adc_labels(y_fake, fake=True)))


class ConditionHead(nn.Module):
    """The conditioning part of a D epilogue: adds to the logit and/or emits class logits.

    ``forward(phi, y, adv)`` takes the unconditional logit ``adv = ψ(φ)`` (B,) and returns
    ``(logits, cls_logits)``; what it does is the registered :class:`Conditioning` ``cond``
    (projection adds ⟨embed(y), φ⟩ to the logit; AC heads return (B, K) class logits, ADC
    (B, 2K); ``cls_logits`` is None otherwise).

    Args:
        feature_dim: the size F of D's embedding φ.
        num_classes: K; must be > 0 for every head but ``none``.
        cond: a registered conditioning name.
        sn: spectral normalisation on the head's layers.
    """

    def __init__(self, feature_dim: int, num_classes: int = 0, cond: str = "none",
                 sn: bool = False) -> None:
        super().__init__()
        kind = get_conditioning(cond)
        if kind.needs_classes and num_classes <= 0:
            raise ConfigError(f"cond={cond!r} needs num_classes > 0, got {num_classes}")
        self.cond = cond
        self.kind = kind
        self.num_classes = num_classes if kind.needs_classes else 0
        kind.build(self, feature_dim, self.num_classes, sn)

    def forward(self, phi: torch.Tensor, y: torch.Tensor | None,
                adv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.kind.forward(self, phi, y, adv)


def _weight(module: nn.Module) -> torch.Tensor:
    """The raw weight tensor whether or not a parametrization wraps it (for initialisation)."""
    if nn.utils.parametrize.is_parametrized(module, "weight"):
        return module.parametrizations.weight.original
    return module.weight


# ----------------------------------------------------------------------------------- losses


def adc_labels(y: torch.Tensor, fake: bool) -> torch.Tensor:
    """ADC-GAN's 2K-way targets: real class y → 2y, fake class y → 2y+1."""
    return 2 * y.long() + (1 if fake else 0)


def cond_d_loss(cond: str, real_cls: torch.Tensor | None, fake_cls: torch.Tensor | None,
                y_real: torch.Tensor | None, y_fake: torch.Tensor | None) -> torch.Tensor | None:
    """The conditioning term D (and its classifier) adds, before the λ weight; None if no term.

    Args:
        cond: the registered conditioning of D (``D.cond``).
        real_cls, fake_cls: D's class logits on the real and fake batch (or None).
        y_real, y_fake: the labels of the two batches.

    Returns:
        The term (a scalar tensor), or None for heads without one (``none``, ``proj``).
    """
    return get_conditioning(cond).d_loss(real_cls, fake_cls, y_real, y_fake)


def cond_g_loss(cond: str, fake_cls: torch.Tensor | None,
                y_fake: torch.Tensor | None) -> torch.Tensor | None:
    """The conditioning term G adds, before the λ weight; None if no term.

    Args:
        cond: the registered conditioning of D.
        fake_cls: D's class logits on G's batch.
        y_fake: the labels G was given.

    Returns:
        The term, or None.
    """
    return get_conditioning(cond).g_loss(fake_cls, y_fake)
