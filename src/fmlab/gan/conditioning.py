"""Class conditioning: conditional BatchNorm for G, discriminator heads and their losses.

StudioGAN's taxonomy treats conditioning as its own axis, so it lives here and not inside the nets:
any generator can use :class:`ConditionalBatchNorm2d` / :class:`LinearConditionalBatchNorm2d`, and
any discriminator ends in a :class:`ConditionHead` over its embedding φ(x).

D heads (``cond``):
- ``"none"``: unconditional, only the adversarial logit ψ(φ).
- ``"proj"`` (projection D): s = ψ(φ) + ⟨embed(y), φ⟩.
- ``"ac"`` (AC-GAN): a K-way classifier C(φ); D trains C on reals *and* fakes.
- ``"acmod"`` (StudioGAN's ACGAN-Mod): same head, but D trains C on reals only.
- ``"adc"`` (ADC-GAN): a 2K-way classifier; the real class y is index 2y, the fake class y is 2y+1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fmlab.errors import ConfigError, DataError

COND_KINDS = ("none", "proj", "ac", "acmod", "adc")


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


class ConditionHead(nn.Module):
    """The conditioning part of a D epilogue: adds to the logit and/or emits class logits.

    ``forward(phi, y, adv)`` takes the unconditional logit ``adv = ψ(φ)`` (B,) and returns
    ``(logits, cls_logits)``: projection adds ⟨embed(y), φ⟩ to the logit; AC heads return
    (B, K) class logits, ADC (B, 2K); ``cls_logits`` is None otherwise.
    """

    def __init__(self, feature_dim: int, num_classes: int = 0, cond: str = "none",
                 sn: bool = False) -> None:
        super().__init__()
        if cond not in COND_KINDS:
            raise ConfigError(f"unknown discriminator conditioning cond={cond!r}; "
                              f"known: {', '.join(COND_KINDS)}")
        if cond != "none" and num_classes <= 0:
            raise ConfigError(f"cond={cond!r} needs num_classes > 0, got {num_classes}")
        self.cond = cond
        self.num_classes = num_classes if cond != "none" else 0
        if cond == "proj":
            self.embed = maybe_sn(nn.Embedding(num_classes, feature_dim), sn)
            nn.init.xavier_uniform_(_weight(self.embed))
        elif cond in ("ac", "acmod"):
            self.classifier = maybe_sn(nn.Linear(feature_dim, num_classes), sn)
        elif cond == "adc":
            self.classifier = maybe_sn(nn.Linear(feature_dim, 2 * num_classes), sn)

    def forward(self, phi: torch.Tensor, y: torch.Tensor | None,
                adv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.cond == "none":
            return adv, None
        if self.cond == "proj":
            y = check_labels(y, self.num_classes, "projection discriminator")
            return adv + (self.embed(y) * phi).sum(dim=1), None
        return adv, self.classifier(phi)


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

    - ac: CE(C(x_r), y_r) + CE(C(x_f), y_f)
    - acmod: CE(C(x_r), y_r)
    - adc: CE(C(x_r), 2y_r) + CE(C(x_f), 2y_f+1)
    """
    if cond in ("none", "proj"):
        return None
    if real_cls is None or y_real is None:
        raise ConfigError(f"cond={cond!r} needs class logits and labels for the real batch")
    if cond == "acmod":
        return F.cross_entropy(real_cls, y_real.long())
    if fake_cls is None or y_fake is None:
        raise ConfigError(f"cond={cond!r} needs class logits and labels for the fake batch")
    if cond == "ac":
        return F.cross_entropy(real_cls, y_real.long()) + F.cross_entropy(fake_cls, y_fake.long())
    if cond == "adc":
        return (F.cross_entropy(real_cls, adc_labels(y_real, fake=False))
                + F.cross_entropy(fake_cls, adc_labels(y_fake, fake=True)))
    raise ConfigError(f"unknown conditioning {cond!r}")


def cond_g_loss(cond: str, fake_cls: torch.Tensor | None,
                y_fake: torch.Tensor | None) -> torch.Tensor | None:
    """The conditioning term G adds, before the λ weight; None if no term.

    - ac / acmod: CE(C(G(z,y)), y)
    - adc: CE(C(G(z,y)), 2y) − CE(C(G(z,y)), 2y+1)
    """
    if cond in ("none", "proj"):
        return None
    if fake_cls is None or y_fake is None:
        raise ConfigError(f"cond={cond!r} needs class logits and labels for the fake batch")
    if cond in ("ac", "acmod"):
        return F.cross_entropy(fake_cls, y_fake.long())
    if cond == "adc":
        return (F.cross_entropy(fake_cls, adc_labels(y_fake, fake=False))
                - F.cross_entropy(fake_cls, adc_labels(y_fake, fake=True)))
    raise ConfigError(f"unknown conditioning {cond!r}")
