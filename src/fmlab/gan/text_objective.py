"""A caption-conditioned GAN as an engine objective: GAN-CLS, T2I-SupCon and GALIP's terms.

:class:`TextGANObjective` is :class:`~fmlab.gan.objective.GANObjective`'s sibling for captions:
the engine's manual optimisation runs the loop (``{"g", "d"}`` optimisers, per-step seeded
generator, checkpoints); one :meth:`~TextGANObjective.training_step` is one D update and one G
update on a batch ``{"images", "emb" (caption embeddings), "labels" (their classes)}``.
Class-conditional ``gan_step`` is left alone: it takes int labels, this takes sentence vectors.

D's update (s = ψ(φ(x)) + ⟨c(e), Vφ(x)⟩ from :class:`~fmlab.gan.caption_cond.CaptionDiscriminator`):

- matching-aware loss on (x, e), (x, ê) and (G(z, e), e) (:class:`~fmlab.gan.matching.
  MatchingAwareLoss`; ê = a caption of another class from the batch). ``gan.mismatch: false``
  drops (x, ê) — and never computes it — the plain conditional-GAN baseline. φ(x) does not
  depend on the caption, so s(x, ê) reuses φ(x): no extra D pass;
- label flipping (``gan.flip_p``) and instance noise (``gan.noise_sigma``, annealed linearly
  to 0 at step ``gan.noise_steps``) — Text2FaceGAN's tricks;
- T2I-SupCon (``gan.supcon_lambda``): SupCon over D's features of the real images and of the
  images generated from the *same* captions, positives = same class (papers.md #40), with
  :func:`fmlab.pretrain.simclr.contrastive_loss`; it joins G's loss too (D frozen);
- GALIP's MA-GP (``gan.magp_lambda``, ``gan.magp_p``) on the real matched pairs.

G's update: the matching-aware G loss on (G(z, e), e), plus SupCon, plus GALIP's
−λ·cos(E_I(G(z, e)), e) with the frozen aligned image encoder (``gan.clip_lambda``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from fmlab.engine.config import OptimConfig
from fmlab.engine.optim import build_optimizer
from fmlab.errors import ConfigError, DataError
from fmlab.gan.caption_cond import CaptionDiscriminator, CaptionGenerator
from fmlab.gan.ema import EMA
from fmlab.gan.galip import AlignedImageEncoder, clip_similarity, ma_gradient_penalty
from fmlab.gan.matching import MatchingAwareLoss, instance_noise, mismatched_indices
from fmlab.gan.step import GANStepConfig, frozen
from fmlab.pretrain.simclr import contrastive_loss

__all__ = ["TextGANObjective", "supcon_features_loss"]


def supcon_features_loss(phi_real: Tensor, phi_fake: Tensor, labels: Tensor,
                         tau: float) -> Tensor:
    """SupCon over the 2B features of real and generated images; positives share a class.

    Args:
        phi_real: (B, F) D's features of the real images.
        phi_fake: (B, F) D's features of the images generated from the same captions.
        labels: (B,) the captions' classes (the fakes inherit them).
        tau: the temperature.

    Returns:
        The mean over anchors of −1/|P(i)| Σ_{p∈P(i)} log softmax_{a≠i}(z_i·z_a/τ)_p, z = φ/‖φ‖.
    """
    return contrastive_loss([phi_real, phi_fake], temperature=tau, labels=labels)[0]


def _f(t: Tensor) -> float:
    return float(t.detach())


class TextGANObjective(nn.Module):
    """G(z, e), D(x, e), EMA-G and an optional frozen image encoder, trained step by step.

    Args:
        G: the caption generator.
        D: the caption discriminator.
        cfg: the step weights (``loss`` vanilla/hinge and the caption keys of GANStepConfig).
        G_ema: the generator EMA, or None.
        image_encoder: GALIP's aligned image tower; needed when ``cfg.clip_lambda > 0``.
    """

    def __init__(self, G: CaptionGenerator, D: CaptionDiscriminator, cfg: GANStepConfig,
                 G_ema: EMA | None = None, image_encoder: AlignedImageEncoder | None = None
                 ) -> None:
        super().__init__()
        if cfg.clip_lambda > 0 and image_encoder is None:
            raise ConfigError("gan.clip_lambda > 0 needs the aligned image encoder")
        self.G, self.D, self.G_ema, self.image_encoder = G, D, G_ema, image_encoder
        self.cfg = cfg
        self.loss = MatchingAwareLoss(cfg.loss, mismatch=cfg.mismatch, flip_p=cfg.flip_p)

    def forward(self, batch: Any) -> Any:
        raise TypeError("TextGANObjective is trained through training_step (two optimisers)")

    @property
    def G_eval(self) -> nn.Module:
        """The EMA generator when there is one, else G."""
        return self.G_ema.module if self.G_ema is not None else self.G

    def configure_optimizers(self, optim: Mapping[str, OptimConfig]
                             ) -> dict[str, torch.optim.Optimizer]:
        """``{"g": optimiser of G, "d": optimiser of D}`` (a frozen tower is in neither)."""
        missing = [k for k in ("g", "d") if k not in optim]
        if missing:
            raise ConfigError(f"a GAN needs optim configs 'g' and 'd'; missing {missing}")
        return {"g": build_optimizer(self.G, optim["g"]), "d": build_optimizer(self.D, optim["d"])}

    def sigma(self, step: int) -> float:
        """Instance-noise σ at ``step``: ``noise_sigma`` decaying linearly to 0 at ``noise_steps``
        (a fixed horizon, not ``max_steps``, so a run resumed with more steps stays exact)."""
        c = self.cfg
        if c.noise_sigma == 0 or c.noise_steps <= 0:
            return 0.0
        return c.noise_sigma * max(0.0, 1.0 - step / c.noise_steps)

    def score(self, x: Tensor, e: Tensor) -> tuple[Tensor, Tensor]:
        """(s(x, e), φ(x)): D's logit and image features in one pass."""
        phi = self.D.base.embed(x)
        return self.D.base.adv_logit(phi) + self.D.match_score(phi, e), phi

    def d_update(self, x: Tensor, e: Tensor, y: Tensor, opt: torch.optim.Optimizer,
                 gen: torch.Generator, step: int) -> dict[str, float]:
        """One D step on real pairs, mismatched pairs (if on) and fakes; returns its terms."""
        c = self.cfg
        with torch.no_grad():
            fake = self.G(self.G.sample_z(x.shape[0], gen).to(x.device), e)
        sigma = self.sigma(step)
        opt.zero_grad(set_to_none=True)
        s_real, phi_r = self.score(instance_noise(x, sigma, gen), e)
        s_wrong = None
        if c.mismatch:
            wrong = e[mismatched_indices(y.cpu(), gen).to(e.device)]
            s_wrong = self.D.base.adv_logit(phi_r) + self.D.match_score(phi_r, wrong)
        s_fake, phi_f = self.score(instance_noise(fake, sigma, gen), e)
        loss = self.loss.d_loss(s_real, s_wrong, s_fake, gen)
        logs = {"d_adv": _f(loss), "logits_real": _f(s_real.mean()),
                "logits_fake": _f(s_fake.mean())}
        if s_wrong is not None:
            logs["logits_wrong"] = _f(s_wrong.mean())
        if c.supcon_lambda > 0:
            term = supcon_features_loss(phi_r, phi_f, y, c.supcon_tau)
            loss, logs["d_supcon"] = loss + c.supcon_lambda * term, _f(term)
        if c.magp_lambda > 0:
            term = ma_gradient_penalty(self.D, x, e, c.magp_p)
            loss, logs["d_magp"] = loss + c.magp_lambda * term, _f(term)
        loss.backward()
        opt.step()
        logs["d_loss"] = _f(loss)
        return logs

    def g_update(self, x: Tensor, e: Tensor, y: Tensor, opt: torch.optim.Optimizer,
                 gen: torch.Generator, step: int) -> dict[str, float]:
        """One G step through the frozen D (and the frozen image encoder); returns its terms."""
        c = self.cfg
        opt.zero_grad(set_to_none=True)
        fake = self.G(self.G.sample_z(x.shape[0], gen).to(x.device), e)
        with frozen(self.D):
            s_fake, phi_f = self.score(instance_noise(fake, self.sigma(step), gen), e)
            loss = self.loss.g_loss(s_fake)
            logs = {"g_adv": _f(loss)}
            if c.supcon_lambda > 0:
                with torch.no_grad():
                    phi_r = self.D.base.embed(x)
                term = supcon_features_loss(phi_r, phi_f, y, c.supcon_tau)
                loss, logs["g_supcon"] = loss + c.supcon_lambda * term, _f(term)
        if c.clip_lambda > 0:
            assert self.image_encoder is not None
            cos = clip_similarity(self.image_encoder(fake), e)
            loss, logs["g_clip_cos"] = loss - c.clip_lambda * cos, _f(cos)
        loss.backward()
        opt.step()
        if self.G_ema is not None:
            self.G_ema.update(self.G)
        logs["g_loss"] = _f(loss)
        return logs

    def training_step(self, batch: dict[str, Tensor],
                      optimizers: Mapping[str, torch.optim.Optimizer], step: int,
                      generator: torch.Generator) -> dict[str, float]:
        """One D update then one G update on ``batch`` (float images in [-1, 1])."""
        missing = [k for k in ("images", "emb", "labels") if k not in batch]
        if missing:
            raise DataError(f"a caption GAN batch needs 'images', 'emb' and 'labels'; "
                            f"missing {missing}")
        x, e, y = batch["images"], batch["emb"].float(), batch["labels"]
        if x.dtype == torch.uint8:
            raise DataError("TextGANObjective takes float images in [-1, 1] (the data source "
                            "converts them)")
        logs = self.d_update(x, e, y, optimizers["d"], generator, step)
        logs.update(self.g_update(x, e, y, optimizers["g"], generator, step))
        return logs
