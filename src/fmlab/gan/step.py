"""One GAN training step composed from the taxonomy's axes (not a trainer).

``gan_step`` = one :func:`d_step` + one :func:`g_step`. The engine owns the loop, data, schedules
and checkpoints; these functions own the GAN maths: adversarial loss × conditioning head (read from
``D.cond``) × regularisers (R1, WGAN-GP, CR/bCR, LeCam, AdaptiveMix) × DiffAugment.

Conventions (StudioGAN unless noted):
- DiffAugment T is applied to reals and fakes in both updates; R1 differentiates through T.
- WGAN-GP interpolates the un-augmented reals and fakes and uses the real labels.
- CR compares D on the images it saw with D on ``cr_augment`` of them (targets not detached).
- LeCam: the EMAs update every D step; the penalty joins from ``lecam_start`` on.
- AdaptiveMix replaces the adversarial logits by classify(z_mix) + classify(f(x_m)) and adds the
  shrinkage term to D's real and fake losses and to G's loss (official code); conditioning heads
  and CR use D's plain output on the unmixed batch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields

import torch
from torch import nn

from fmlab.errors import ConfigError
from fmlab.gan.adaptivemix import adaptive_mix
from fmlab.gan.conditioning import check_labels, cond_d_loss, cond_g_loss
from fmlab.gan.diffaugment import diff_augment, parse_policy
from fmlab.gan.ema import EMA
from fmlab.gan.losses import GAN_LOSSES
from fmlab.gan.nets.base import Discriminator, DOutput, Generator
from fmlab.gan.regularizers import (
    LeCamEMA,
    consistency_loss,
    cr_augment,
    gradient_penalty,
    lecam_loss,
    r1_penalty,
)

Penalty = Callable[[nn.Module], tuple[torch.Tensor, dict[str, float]]]


@dataclass
class GANStepConfig:
    """Every weight of the step in one place; 0 switches a term off."""

    loss: str = "hinge"             # a name in fmlab.gan.GAN_LOSSES
    gp_lambda: float | None = None  # gradient-penalty weight; None → the loss's own (WGAN-GP: 10)
    cond_lambda: float = 1.0        # AC / ACGAN-Mod / ADC term, D and G
    r1_lambda: float = 0.0          # r1_lambda · ½E‖∇D(x_r)‖²
    cr_lambda: float = 0.0          # CR on reals (paper: 10)
    bcr_fake_lambda: float = 0.0    # bCR's extra term on fakes (paper: 10)
    lecam_lambda: float = 0.0       # paper: 0.3
    lecam_decay: float = 0.99
    lecam_start: int = 1000
    adaptivemix: bool = False
    am_alpha: float = 1.0
    am_noise_std: float = 0.05
    diffaug: str = ""               # DiffAugment policy, e.g. "color,translation,cutout"; "" = off
    # caption-conditioned GANs only (data.conditioning: caption; fmlab.gan.text_objective):
    mismatch: bool = True           # GAN-CLS's real-image/wrong-caption term in D's loss
    flip_p: float = 0.0             # label flipping: swap a pair's real/fake target with this p
    noise_sigma: float = 0.0        # instance noise σ on D's inputs, annealed linearly to 0 ...
    noise_steps: int = 1000         # ... at this step (a fixed horizon: resume stays exact)
    supcon_lambda: float = 0.0      # T2I-SupCon: SupCon on D's features of real + fake images
    supcon_tau: float = 0.1
    clip_lambda: float = 0.0        # GALIP: −λ·cos(image tower(G(z, e)), e) in G's loss
    magp_lambda: float = 0.0        # GALIP/DF-GAN matching-aware gradient penalty k (paper: 2)
    magp_p: float = 6.0             # ... and its power p

    def __post_init__(self) -> None:
        loss = GAN_LOSSES.get(self.loss)  # raises with the known names
        if self.gp_lambda is None:
            self.gp_lambda = loss.gp_lambda
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v < 0:
                raise ConfigError(f"gan step config: {f.name} must be >= 0, got {v}")
        if not 0.0 <= self.lecam_decay < 1.0:
            raise ConfigError(f"gan step config: lecam_decay must lie in [0, 1), "
                              f"got {self.lecam_decay}")
        if self.am_alpha <= 0:
            raise ConfigError(f"gan step config: am_alpha must be > 0, got {self.am_alpha}")
        parse_policy(self.diffaug)
        if self.flip_p > 1:
            raise ConfigError(f"gan step config: flip_p must lie in [0, 1], got {self.flip_p}")
        if self.supcon_tau <= 0:
            raise ConfigError(f"gan step config: supcon_tau must be > 0, got {self.supcon_tau}")

    #: the keys only a caption-conditioned run reads (refused elsewhere when set)
    CAPTION_KEYS = ("mismatch", "flip_p", "noise_sigma", "noise_steps", "supcon_lambda", "supcon_tau",
                    "clip_lambda", "magp_lambda", "magp_p")

    @classmethod
    def from_dict(cls, d: dict) -> GANStepConfig:
        known = {f.name for f in fields(cls)}
        for k in d:
            if k not in known:
                raise ConfigError(f"unknown gan step config key {k!r}; known: "
                                  f"{', '.join(sorted(known))}")
        return cls(**d)


@dataclass
class GANState:
    """What persists between steps: the step count, LeCam's anchors and an optional G EMA."""

    step: int = 0
    lecam: LeCamEMA | None = None
    ema: EMA | None = None
    extra: dict = field(default_factory=dict)


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """Turn off parameter gradients for the block (D during the G update), then restore them."""
    flags = [p.requires_grad for p in module.parameters()]
    for p in module.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, f in zip(module.parameters(), flags):
            p.requires_grad_(f)


def _f(t: torch.Tensor) -> float:
    return float(t.detach())


def _augment(x: torch.Tensor, cfg: GANStepConfig, g: torch.Generator | None) -> torch.Tensor:
    return diff_augment(x, cfg.diffaug, g) if cfg.diffaug else x


def _labels(G: Generator, D: Discriminator, real_labels: torch.Tensor | None, n: int,
            g: torch.Generator | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(real labels for D, fake labels for G and D), validated against both nets."""
    if D.num_classes > 0:
        if G.num_classes != D.num_classes:
            raise ConfigError(f"discriminator conditions on {D.num_classes} classes but the "
                              f"generator on {G.num_classes}")
        if real_labels is None:
            raise ConfigError(f"discriminator cond={D.cond!r} needs real_labels")
    y_real = check_labels(real_labels, D.num_classes, "real_labels") if D.num_classes else None
    return y_real, G.sample_labels(n, g)


def _d_view(D: Discriminator, x: torch.Tensor, y: torch.Tensor | None, cfg: GANStepConfig,
            g: torch.Generator | None) -> tuple[torch.Tensor, DOutput, torch.Tensor | None]:
    """(logits for the adversarial loss, D's plain output, AdaptiveMix term or None)."""
    y = y if D.num_classes > 0 else None
    if cfg.adaptivemix:
        am = adaptive_mix(D, x, y, g, alpha=cfg.am_alpha, noise_std=cfg.am_noise_std)
        return am.logits, am.plain, am.loss
    out = D(x, y)
    return out.logits, out, None


def d_step(G: Generator, D: Discriminator, opt_D: torch.optim.Optimizer,
           real_images: torch.Tensor, real_labels: torch.Tensor | None, cfg: GANStepConfig,
           generator: torch.Generator | None = None, state: GANState | None = None
           ) -> dict[str, float]:
    """One discriminator update; returns the terms as floats (prefixed ``d_``)."""
    state = state if state is not None else GANState()
    adv = GAN_LOSSES.get(cfg.loss)
    n = real_images.shape[0]
    y_real, y_fake = _labels(G, D, real_labels, n, generator)
    with torch.no_grad():
        fake = G(G.sample_z(n, generator), y_fake)
    real = real_images.detach().requires_grad_(cfg.r1_lambda > 0)
    a_real, a_fake = _augment(real, cfg, generator), _augment(fake, cfg, generator)

    opt_D.zero_grad(set_to_none=True)
    s_r, out_r, am_r = _d_view(D, a_real, y_real, cfg, generator)
    s_f, out_f, am_f = _d_view(D, a_fake, y_fake, cfg, generator)
    loss = adv.d_loss(s_r, s_f)
    logs = {"d_adv": _f(loss), "logits_real": _f(s_r.mean()),
            "logits_fake": _f(s_f.mean())}

    def add(name: str, weight: float, term: torch.Tensor | None) -> None:
        nonlocal loss
        if term is not None and weight > 0:
            loss = loss + weight * term
            logs[name] = _f(term)

    add("d_cond", cfg.cond_lambda,
        cond_d_loss(D.cond, out_r.cls_logits, out_f.cls_logits, y_real, y_fake))
    if am_r is not None and am_f is not None:
        add("d_adaptivemix", 1.0, am_r + am_f)
    if cfg.r1_lambda > 0:
        add("d_r1", cfg.r1_lambda, r1_penalty(s_r, real))
    if cfg.gp_lambda:
        y = y_real if D.num_classes > 0 else None
        add("d_gp", cfg.gp_lambda, gradient_penalty(D, real, fake, y, generator))
    if cfg.cr_lambda > 0:
        aug = D(cr_augment(a_real.detach(), generator), y_real if D.num_classes else None)
        add("d_cr", cfg.cr_lambda, consistency_loss(out_r, aug))
    if cfg.bcr_fake_lambda > 0:
        aug = D(cr_augment(a_fake.detach(), generator), y_fake if D.num_classes else None)
        add("d_bcr_fake", cfg.bcr_fake_lambda, consistency_loss(out_f, aug))
    if cfg.lecam_lambda > 0:
        if state.lecam is None:
            state.lecam = LeCamEMA(cfg.lecam_decay, cfg.lecam_start)
        state.lecam.update(s_r, s_f, state.step)
        if state.step >= cfg.lecam_start:
            add("d_lecam", cfg.lecam_lambda, lecam_loss(s_r, s_f, state.lecam))
    loss.backward()
    opt_D.step()
    logs["d_loss"] = _f(loss)
    return logs


def g_step(G: Generator, D: Discriminator, opt_G: torch.optim.Optimizer, n: int,
           cfg: GANStepConfig, generator: torch.Generator | None = None,
           state: GANState | None = None, penalty: Penalty | None = None) -> dict[str, float]:
    """One generator update on ``n`` fresh samples; D's parameters get no gradient.

    ``penalty(G) -> (term, logs)`` adds a parameter-space term to G's loss (Adapt-then-Unlearn's
    EWC and repulsion); its logs join the step's.
    """
    adv = GAN_LOSSES.get(cfg.loss)
    y_fake = G.sample_labels(n, generator)
    if D.num_classes > 0 and G.num_classes != D.num_classes:
        raise ConfigError(f"discriminator conditions on {D.num_classes} classes but the "
                          f"generator on {G.num_classes}")
    opt_G.zero_grad(set_to_none=True)
    fake = G(G.sample_z(n, generator), y_fake)
    with frozen(D):
        s_f, out_f, am_f = _d_view(D, _augment(fake, cfg, generator), y_fake, cfg, generator)
        loss = adv.g_loss(s_f)
        logs = {"g_adv": _f(loss)}
        cond = cond_g_loss(D.cond, out_f.cls_logits, y_fake)
        if cond is not None and cfg.cond_lambda > 0:
            loss = loss + cfg.cond_lambda * cond
            logs["g_cond"] = _f(cond)
        if am_f is not None:
            loss = loss + am_f
            logs["g_adaptivemix"] = _f(am_f)
        if penalty is not None:
            term, plogs = penalty(G)
            loss = loss + term
            logs.update(plogs)
        loss.backward()
    opt_G.step()
    if state is not None and state.ema is not None:
        state.ema.update(G)
    logs["g_loss"] = _f(loss)
    return logs


def gan_step(G: Generator, D: Discriminator, opt_G: torch.optim.Optimizer,
             opt_D: torch.optim.Optimizer, real_images: torch.Tensor,
             real_labels: torch.Tensor | None, cfg: GANStepConfig,
             generator: torch.Generator | None = None,
             state: GANState | None = None) -> dict[str, float]:
    """One D update then one G update (same batch size); ``state.step`` advances by one."""
    state = state if state is not None else GANState()
    logs = d_step(G, D, opt_D, real_images, real_labels, cfg, generator, state)
    logs.update(g_step(G, D, opt_G, real_images.shape[0], cfg, generator, state))
    state.step += 1
    logs["step"] = float(state.step)
    return logs
