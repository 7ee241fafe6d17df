"""Engine objectives of ``fmlab caption train``: the mini image-text model, a word LM, CgT-GAN.

- :class:`ClipObjective`: symmetric InfoNCE over (image, caption) pairs of the ``clip`` block.
- :class:`LMObjective`: teacher-forced cross-entropy of captions with a constant (zero) image
  embedding — the reference LM of the perplexity metric.
- :class:`CgTObjective` (manual optimisation, optimisers ``g`` and ``d``): the first
  ``warmup_steps`` steps are a text-only warm-up: the captioner learns to decode each corpus
  sentence from its own (noised) text embedding — no image, so no paired data; it learns to read
  the joint space and the image embedding replaces the text one afterwards. Then each step samples ŷ ~ p(·|x) and decodes greedily, rewards
  both with r = λ r_sem + (1 − λ) r_nat, takes the self-critical step on G, and one step on the
  text discriminator D (corpus sentences real, the samples fake).

Semantic rewards are looked up by name in :data:`SEMANTIC_REWARDS` (``clip_cos``, ``clip_agg``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from fmlab.caption.models import CaptionDecoder, MiniClip, TextDiscriminator
from fmlab.caption.rewards import clip_agg_target, mixed_reward, semantic_reward
from fmlab.caption.self_critical import self_critical_loss
from fmlab.engine.config import OptimConfig
from fmlab.engine.optim import build_optimizer
from fmlab.errors import ConfigError
from fmlab.registry import Registry

__all__ = ["SEMANTIC_REWARDS", "CgTObjective", "ClipObjective", "LMObjective", "lm_loss"]

# name -> target(image_emb, corpus_emb, tau, top_k): the vector a caption embedding is compared to
SEMANTIC_REWARDS: Registry[Callable[..., torch.Tensor]] = Registry("semantic reward")
SEMANTIC_REWARDS.add("clip_cos", lambda img, corpus, tau, top_k: img)
SEMANTIC_REWARDS.add("clip_agg", lambda img, corpus, tau, top_k: clip_agg_target(img, corpus, tau, top_k))


class ClipObjective(nn.Module):
    """Symmetric InfoNCE of the mini image-text model; logs image→text top-1 accuracy."""

    def __init__(self, clip: MiniClip) -> None:
        super().__init__()
        self.clip = clip

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        zi, zt = self.clip.encode_image(batch["images"]), self.clip.encode_text(batch["caption_ids"])
        logits = self.clip.logit_scale.clamp(max=4.6052).exp() * zi @ zt.T
        target = torch.arange(len(zi), device=zi.device)
        loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
        return loss, {"acc": float((logits.argmax(1) == target).float().mean())}


def lm_loss(decoder: CaptionDecoder, feats: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Mean per-token NLL of ``ids`` (EOS included, PAD excluded) given ``feats``."""
    logp, mask = decoder.token_logp(feats, ids)
    return -(logp.sum() / mask.sum().clamp_min(1.0))


class LMObjective(nn.Module):
    """A word LM: the decoder with a constant zero image embedding (``feat_dim`` 1)."""

    def __init__(self, decoder: CaptionDecoder) -> None:
        super().__init__()
        self.decoder = decoder

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        ids = batch["caption_ids"]
        loss = lm_loss(self.decoder, torch.zeros(len(ids), 1, device=ids.device), ids)
        return loss, {"ppl": float(loss.detach().exp())}


class CgTObjective(nn.Module):
    """CgT-GAN's policy-gradient step with a self-critical baseline and a text discriminator.

    Args:
        decoder: the captioner G (trained).
        clip: the frozen mini image-text model (rewards; its image tower made the batch's ``feats``).
        discriminator: the text discriminator D, or None when λ = 1 (no naturalness reward).
        corpus_ids: (N, T) word ids of the external corpus (LM warm-up, D's real sentences).
        semantic: a :data:`SEMANTIC_REWARDS` name; ``lam`` λ; ``tau``/``top_k`` CLIP-agg's.
        warmup_steps: text-only warm-up steps before policy gradient starts; ``warmup_noise`` σ.
    """

    def __init__(self, decoder: CaptionDecoder, clip: MiniClip, discriminator: TextDiscriminator | None,
                 corpus_ids: torch.Tensor, semantic: str = "clip_cos", lam: float = 1.0,
                 tau: float = 0.05, top_k: int = 16, warmup_steps: int = 0, warmup_noise: float = 0.05) -> None:
        super().__init__()
        self.target_fn = SEMANTIC_REWARDS.get(semantic)
        mixed_reward(torch.zeros(1), None if discriminator is None else torch.zeros(1), lam)  # checks λ
        if len(corpus_ids) == 0:
            raise ConfigError("CgT-GAN: the external caption corpus is empty")
        self.decoder, self.D = decoder, discriminator
        self.clip = clip.requires_grad_(False).eval()
        self.lam, self.tau, self.top_k, self.warmup_steps = float(lam), float(tau), int(top_k), int(warmup_steps)
        self.warmup_noise = float(warmup_noise)
        self.register_buffer("corpus_ids", corpus_ids.long(), persistent=False)
        with torch.no_grad():
            self.register_buffer("corpus_emb", self.clip.encode_text(self.corpus_ids), persistent=False)

    def forward(self, batch: dict) -> None:
        raise TypeError("CgTObjective is trained through training_step (optimisers g and d)")

    def train(self, mode: bool = True) -> CgTObjective:
        super().train(mode)
        self.clip.eval()  # frozen: the reward model never changes mode
        return self

    def configure_optimizers(self, optim: Mapping[str, OptimConfig]) -> dict[str, torch.optim.Optimizer]:
        """``{"g": the captioner's, "d": the discriminator's}`` (``d`` only with a discriminator)."""
        out = {"g": build_optimizer(self.decoder, optim["g"])}
        if self.D is not None:
            out["d"] = build_optimizer(self.D, optim["d"])
        return out

    def reward(self, ids: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``(r, r_sem, r_nat)`` of captions ``ids`` against semantic targets ``target``."""
        with torch.no_grad():
            r_sem = semantic_reward(self.clip.encode_text(ids), target)
            r_nat = self.D.reward(ids) if self.D is not None else None
        return mixed_reward(r_sem, r_nat, self.lam), r_sem, r_nat

    def _corpus_batch(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(len(self.corpus_ids), (n,), generator=generator).to(self.corpus_ids.device)
        return self.corpus_ids[idx], self.corpus_emb[idx]

    def warmup_features(self, text_emb: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The text-only warm-up's stand-in image embedding: normalise(E_T(c) + σ·n), n ~ N(0, I).

        The sentence's own text embedding (no image involved) plus noise, so the decoder learns
        to read the shared embedding space and tolerates the image-text modality gap.
        """
        noise = torch.randn(text_emb.shape, generator=generator).to(text_emb.device)
        return F.normalize(text_emb + self.warmup_noise * noise, dim=-1)

    def _d_step(self, opt: torch.optim.Optimizer, real: torch.Tensor, fake: torch.Tensor) -> float:
        lr, lf = self.D(real), self.D(fake)
        loss = (F.binary_cross_entropy_with_logits(lr, torch.ones_like(lr))
                + F.binary_cross_entropy_with_logits(lf, torch.zeros_like(lf)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())

    def training_step(self, batch: dict[str, torch.Tensor], optimizers: Mapping[str, torch.optim.Optimizer],
                      step: int, generator: torch.Generator) -> dict[str, float]:
        """One LM warm-up step, or one self-critical G step and one D step."""
        feats = batch["feats"]
        real, real_emb = self._corpus_batch(len(feats), generator)
        logs: dict[str, float] = {}
        fake = None
        if step < self.warmup_steps:  # text-only warm-up: corpus sentences from their own embedding
            loss = lm_loss(self.decoder, self.warmup_features(real_emb, generator), real)
            logs["lm_loss"] = float(loss.detach())
        else:
            target = self.target_fn(feats, self.corpus_emb, self.tau, self.top_k)
            ids, logp, mask = self.decoder.sample(feats, generator=generator)
            with torch.no_grad():
                greedy, _, _ = self.decoder.sample(feats, greedy=True)
            r, r_sem, r_nat = self.reward(ids, target)
            r_greedy, _, _ = self.reward(greedy, target)
            loss = self_critical_loss(logp, mask, r, r_greedy)
            fake = ids
            logs.update(reward=float(r.mean()), r_sem=float(r_sem.mean()), r_greedy=float(r_greedy.mean()))
            if r_nat is not None:
                logs["r_nat"] = float(r_nat.mean())
        optimizers["g"].zero_grad(set_to_none=True)
        loss.backward()
        optimizers["g"].step()
        if self.D is not None:
            if fake is None:
                with torch.no_grad():
                    fake, _, _ = self.decoder.sample(feats, generator=generator)
            logs["d_loss"] = self._d_step(optimizers["d"], real, fake)
        return logs
