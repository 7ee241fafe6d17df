"""LightCLIP (papers.md #61): multi-level image-text alignment for small CLIPs, ``loss.name: lightclip``.

L = L_inst + w_token·L_token + w_mlm·L_MLM, each term switchable (``loss.lightclip.*``):

* L_inst — symmetric InfoNCE whose targets are progressively softened: ``(1-ε_t)·I + ε_t·U``
  with ``U`` spreading the mass uniformly over the other pairs of the batch and ε_t rising
  linearly from 0 to ``eps_max`` over the first ``eps_ramp`` fraction of training. Many captions
  fit many images (templated captions most of all), so one-hot targets punish true matches.
* L_token — relaxed bipartite matching: each word token is matched to its most similar patch
  token (many words may pick one patch), the matched similarities are averaged over the words
  into an image-text score (FILIP-style) and a second symmetric InfoNCE is taken over it.
* L_MLM — masked language modelling by a short trainable transformer whose masked tokens also
  see the unmasked image embedding (:class:`~fmlab.multimodal.vltokens.FusedMaskedLM`).

The token projections and the MLM are training-only: retrieval and zero-shot use the global
embeddings, so inference costs what CLIP's does. The softening schedule is recalled, not checked
against the paper's code (papers.md says so).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from fmlab.errors import ConfigError
from fmlab.multimodal.model import ImageTextModel
from fmlab.multimodal.objective import CLIP_OBJECTIVES, ImageTextObjective
from fmlab.multimodal.towers import masked_mean
from fmlab.multimodal.vltokens import CaptionTokens, FusedMaskedLM


@dataclass
class LightClipOptions:
    """``loss.lightclip``: which LightCLIP terms are on, and their sizes/weights."""

    soft_labels: bool = True
    eps_max: float = 0.2  # final label softening ε
    eps_ramp: float = 1.0  # fraction of training over which ε rises linearly from 0
    token_align: bool = True
    token_weight: float = 1.0
    token_dim: int = 64  # width of the projected patch / word tokens
    patch_grid: int = 4  # feature map average-pooled to grid x grid patch tokens (0: as it is)
    mlm: bool = True
    mlm_weight: float = 1.0
    mask_prob: float = 0.3
    mlm_width: int = 128
    mlm_layers: int = 2

    def validate(self, prefix: str = "loss.lightclip") -> None:
        checks = (("eps_max", 0.0 <= self.eps_max < 1.0, "must be in [0, 1)"),
                  ("eps_ramp", 0.0 < self.eps_ramp <= 1.0, "must be in (0, 1]"),
                  ("mask_prob", 0.0 < self.mask_prob < 1.0, "must be in (0, 1)"),
                  ("token_weight", self.token_weight >= 0, "must be >= 0"),
                  ("mlm_weight", self.mlm_weight >= 0, "must be >= 0"),
                  ("token_dim", self.token_dim >= 1, "must be >= 1"),
                  ("patch_grid", self.patch_grid >= 0, "must be >= 0"),
                  ("mlm_width", self.mlm_width >= 4 and self.mlm_width % 4 == 0, "must be a multiple of 4"),
                  ("mlm_layers", self.mlm_layers >= 1, "must be >= 1"))
        for key, ok, why in checks:
            if not ok:
                raise ConfigError(f"{prefix}.{key}: {getattr(self, key)!r} {why}")


def soft_clip_targets(n: int, eps: float, device: torch.device | None = None) -> torch.Tensor:
    """``(1-ε)·I + ε·(1-I)/(n-1)``: each row keeps 1-ε on its pair and spreads ε over the others.

    Args:
        n: batch size.
        eps: softening in [0, 1); 0 gives the one-hot (identity) targets of CLIP.
        device: where to build them.

    Returns:
        ``(n, n)`` rows summing to 1 (the identity when ``n == 1``).

    Examples:
        >>> soft_clip_targets(3, 0.2).tolist()[0]
        [0.800000011920929, 0.10000000149011612, 0.10000000149011612]
    """
    eye = torch.eye(n, device=device)
    if n == 1 or eps == 0:
        return eye
    return (1 - eps) * eye + eps * (1 - eye) / (n - 1)


def epsilon_at(step: int, max_steps: int, eps_max: float, ramp: float = 1.0) -> float:
    """ε_t: linear from 0 at step 0 to ``eps_max`` at ``ramp·max_steps``, then constant.

    Examples:
        >>> epsilon_at(0, 100, 0.2), epsilon_at(50, 100, 0.2), epsilon_at(100, 100, 0.2, ramp=0.5)
        (0.0, 0.1, 0.2)
    """
    return float(eps_max * min(1.0, step / max(1.0, ramp * max_steps)))


def soft_contrastive_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """½[CE(rows) + CE(columns)] of an image-by-text logit matrix against soft targets.

    Examples:
        >>> z = torch.randn(4, 4)
        >>> hard = 0.5 * (F.cross_entropy(z, torch.arange(4)) + F.cross_entropy(z.T, torch.arange(4)))
        >>> bool(torch.isclose(soft_contrastive_loss(z, torch.eye(4)), hard))
        True
    """
    ce_i = -(targets * F.log_softmax(logits, 1)).sum(1).mean()
    ce_t = -(targets.T * F.log_softmax(logits.T, 1)).sum(1).mean()
    return 0.5 * (ce_i + ce_t)


def relaxed_matching_scores(patches: torch.Tensor, words: torch.Tensor, word_mask: torch.Tensor) -> torch.Tensor:
    """Image-text scores from token matching: each word takes its best patch, averaged over words.

    ``S[i, j] = mean_{w in text j} max_p <words[j, w], patches[i, p]>`` on the given (normally
    L2-normalised) tokens: the relaxed bipartite matching (many words may share one patch).

    Args:
        patches: ``(Bi, P, D)`` image patch tokens.
        words: ``(Bt, L, D)`` word tokens.
        word_mask: ``(Bt, L)`` which word tokens count (content tokens, no padding/specials).

    Returns:
        ``(Bi, Bt)`` scores.

    Examples:
        >>> p = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
        >>> w = torch.tensor([[[1.0, 0.0], [0.6, 0.8], [9.0, 9.0]]])
        >>> round(relaxed_matching_scores(p, w, torch.tensor([[1, 1, 0]])).item(), 4)  # (1.0 + 0.8) / 2
        0.9
    """
    sim = torch.einsum("ipd,jwd->ijwp", patches, words)  # (Bi, Bt, L, P)
    best = sim.max(dim=-1).values  # per word: its most similar patch
    m = word_mask.to(best.dtype).unsqueeze(0)
    return (best * m).sum(-1) / m.sum(-1).clamp_min(1.0)


def random_mlm_mask(content: torch.Tensor, prob: float) -> torch.Tensor:
    """Bernoulli(prob) over content tokens, at least one per caption (global torch RNG: the engine
    re-seeds it per step, so resumes draw the same masks)."""
    draw = torch.rand(content.shape, device=content.device)
    masked = (draw < prob) & content
    first = torch.where(content, draw, torch.full_like(draw, 2.0)).argmin(1)  # one forced pick
    masked[torch.arange(len(content), device=content.device), first] |= content.any(1)
    return masked


class LightClipObjective(ImageTextObjective):
    """LightCLIP's three-level loss on an :class:`ImageTextModel`, as an engine objective.

    Args:
        model: the towers (text tower with per-token features, image trunk with patch tokens).
        captions: every caption batches point at by ``caption_ids``.
        opts: the ``loss.lightclip`` section.
    """

    def __init__(self, model: ImageTextModel, captions: list[str], opts: LightClipOptions) -> None:
        super().__init__()
        opts.validate()
        self.model, self.opts = model, opts
        self.tokens = CaptionTokens(model.text, list(captions))
        fi, ft = int(model.image.feature_dim), int(model.text.feature_dim)
        if opts.token_align:
            self.patch_proj = nn.Linear(fi, opts.token_dim)
            self.word_proj = nn.Linear(ft, opts.token_dim)
            self.token_logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        if opts.mlm:
            self.mlm = FusedMaskedLM(model.text.token_embedding, self.tokens.vocab, model.feature_dim,
                                     self.tokens.ids.shape[1], opts.mlm_width, opts.mlm_layers)
        self.register_buffer("step", torch.zeros((), dtype=torch.int64))
        self.max_steps = 1

    def on_train_start(self, max_steps: int) -> None:
        self.max_steps = max(1, int(max_steps))
        if self.model.text_locked:
            self.tokens.fill_cache(self.model.text)

    def on_after_optimizer_step(self, step: int, max_steps: int) -> None:
        self.model.clamp_logit_scale()
        self.step.fill_(int(step))
        if self.opts.token_align:
            with torch.no_grad():
                self.token_logit_scale.clamp_(0.0, math.log(self.model.max_logit_scale))

    def epsilon(self) -> float:
        if not self.opts.soft_labels:
            return 0.0
        return epsilon_at(int(self.step), self.max_steps, self.opts.eps_max, self.opts.eps_ramp)

    def _patches(self, tokens: torch.Tensor) -> torch.Tensor:
        g = self.opts.patch_grid
        if g and tokens.shape[1] > g * g:
            side = int(round(tokens.shape[1] ** 0.5))
            if side * side == tokens.shape[1]:
                fmap = tokens.transpose(1, 2).reshape(len(tokens), -1, side, side)
                tokens = F.adaptive_avg_pool2d(fmap, g).flatten(2).transpose(1, 2)
        return F.normalize(self.patch_proj(tokens), dim=-1)

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        rows = batch["caption_ids"].to(self.tokens.ids.device)
        img, patch_tokens = self.model.encode_image_tokens(batch["images"])
        hidden = self.tokens.states(self.model.text, rows)
        txt = self.model.text_proj(masked_mean(hidden, self.tokens.mask[rows]))
        scale = self.model.logit_scale_value()
        eps = self.epsilon()
        target = soft_clip_targets(len(img), eps, img.device)
        logits = scale * F.normalize(img.float(), dim=-1) @ F.normalize(txt.float(), dim=-1).T
        inst = soft_contrastive_loss(logits, target)
        loss, logs = inst, {"loss_inst": inst.detach(), "eps": torch.tensor(eps), "logit_scale": scale.detach()}
        if self.opts.token_align:
            words = F.normalize(self.word_proj(hidden), dim=-1)
            sim = relaxed_matching_scores(self._patches(patch_tokens), words, self.tokens.content[rows])
            tok_scale = self.token_logit_scale.clamp(max=math.log(self.model.max_logit_scale)).exp()
            tok = soft_contrastive_loss(tok_scale * sim, torch.eye(len(img), device=img.device))
            loss = loss + self.opts.token_weight * tok
            logs["loss_token"] = tok.detach()
        if self.opts.mlm:
            content = self.tokens.content[rows]
            mlm, acc = self.mlm.loss(self.tokens.ids[rows], self.tokens.mask[rows],
                                     random_mlm_mask(content, self.opts.mask_prob), img, self.tokens.local)
            loss = loss + self.opts.mlm_weight * mlm
            logs.update(loss_mlm=mlm.detach(), mlm_acc=acc)
        return loss, logs


@CLIP_OBJECTIVES.register("lightclip")
def _lightclip(model: ImageTextModel, source: Any, loss_cfg: Any) -> LightClipObjective:
    return LightClipObjective(model, source.captions, loss_cfg.lightclip)
