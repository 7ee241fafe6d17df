"""PLIP (papers.md #17): identity-level image-text pre-training, ``loss.name: plip``.

L = L_IVLC + w_tic·L_TIC + w_iap·L_IAP, each term switchable (``loss.plip.*``):

* IVLC — identity-level vision-language contrast: InfoNCE whose targets are the row-normalised
  identity-match matrix (every image-text pair of one identity is a positive;
  :func:`~fmlab.multimodal.losses.multi_positive_loss`). Identity = the class (for ``canvas``:
  the class of the first object) or the image itself (``identity: image``, which is CLIP).
* TIC — text-guided image colourisation: the grey image goes through the (shared) image tower;
  a small decoder whose map positions cross-attend to the caption's colour phrases ("red 7")
  predicts the colour image at ``tic_size`` px; L1 loss against the average-pooled colour image.
* IAP — image-guided attribute prediction: the caption's attribute words (canvas colours and
  sizes) are masked and predicted from the rest of the caption and the image embedding
  (:class:`~fmlab.multimodal.vltokens.FusedMaskedLM`).

Decoder and MLM are training-only: inference is the plain two-tower model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from fmlab.data.synthetic.canvas import COLOURS, SIZES
from fmlab.errors import ConfigError, DataError
from fmlab.multimodal.losses import multi_positive_loss
from fmlab.multimodal.model import ImageTextModel
from fmlab.multimodal.objective import CLIP_OBJECTIVES, ImageTextObjective
from fmlab.multimodal.towers import masked_mean
from fmlab.multimodal.vltokens import CaptionTokens, FusedMaskedLM

IDENTITIES = ("class", "image")


@dataclass
class PlipOptions:
    """``loss.plip``: identity definition, which PLIP terms are on, and their sizes/weights."""

    identity: str = "class"  # class (first object's class on canvas) | image (= instance CLIP)
    colourise: bool = True
    tic_weight: float = 1.0
    tic_size: int = 16  # colour target side in px
    tic_width: int = 64
    attributes: bool = True
    iap_weight: float = 1.0
    mlm_width: int = 128
    mlm_layers: int = 2
    colour_words: list[str] = field(default_factory=lambda: list(COLOURS))
    attribute_words: list[str] = field(default_factory=lambda: [*COLOURS, *SIZES])

    def validate(self, prefix: str = "loss.plip") -> None:
        if self.identity not in IDENTITIES:
            raise ConfigError(f"{prefix}.identity: {self.identity!r} is not one of {', '.join(IDENTITIES)}")
        for key in ("tic_weight", "iap_weight"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{prefix}.{key}: {getattr(self, key)!r} must be >= 0")
        for key in ("tic_size", "tic_width", "mlm_layers"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{prefix}.{key}: {getattr(self, key)!r} must be >= 1")
        if self.tic_width % 4 or self.mlm_width % 4 or self.mlm_width < 4:
            raise ConfigError(f"{prefix}.tic_width/mlm_width: {self.tic_width}/{self.mlm_width} "
                              "must be multiples of 4 (attention heads)")


def identity_table(source: Any, identity: str) -> torch.Tensor | None:
    """Map a batch's ``labels`` to identities, or None when they already are the identities.

    :class:`~fmlab.multimodal.data.ImageTextPairs` labels a pair by its image row: ``image``
    keeps that, ``class`` looks up the split's labels (canvas: first object's class).
    :class:`~fmlab.multimodal.data.TemplateCaptions` labels by class already.

    Raises:
        fmlab.errors.DataError: ``class`` on an image-text source without labels.
        fmlab.errors.ConfigError: ``image`` on a templated labelled source.
    """
    from fmlab.multimodal.data import ImageTextPairs

    if isinstance(source, ImageTextPairs):
        if identity == "image":
            return None
        labels = getattr(source.split.images, "labels", None)
        if labels is None:
            raise DataError(f"loss.plip.identity: class needs labels; {source.split.images.origin} has none")
        return torch.as_tensor(np.asarray(labels, dtype=np.int64))
    if identity == "image":
        raise ConfigError("loss.plip.identity: image needs an image-text source; templated "
                          "captions of a labelled source are identified by class")
    return None


def grey_images(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B,H,W,3) → the same shape in grey (ITU-R 601 luminance, replicated).

    Examples:
        >>> grey_images(torch.tensor([[[[255, 0, 0]]]], dtype=torch.uint8)).tolist()
        [[[[76, 76, 76]]]]
    """
    w = torch.tensor([0.299, 0.587, 0.114], device=images.device)
    y = (images.float() * w).sum(-1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
    return y.expand(*images.shape[:-1], 3).contiguous()


def colour_target(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (B,H,W,3) → float (B,3,size,size) in [0, 1] (area average)."""
    x = images.permute(0, 3, 1, 2).float() / 255.0
    return F.adaptive_avg_pool2d(x, size)


class TextGuidedColouriser(nn.Module):
    """Grey-image feature map + caption colour-phrase tokens → colour image (B,3,S,S) in [0,1].

    Map positions are queries of one cross-attention over the phrase tokens (residual), then a
    two-conv decoder at ``out_size`` px predicts RGB.
    """

    def __init__(self, image_channels: int, text_dim: int, width: int = 64, out_size: int = 16,
                 heads: int = 4) -> None:
        super().__init__()
        self.out_size = int(out_size)
        self.inp = nn.Conv2d(image_channels, width, 1)
        self.key = nn.Linear(text_dim, width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.dec = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(width, 3, 3, padding=1))

    def forward(self, fmap: torch.Tensor, text_states: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        q = self.inp(fmap)
        b, c, h, w = q.shape
        tokens = q.flatten(2).transpose(1, 2)
        kv = self.key(text_states)
        att, _ = self.attn(tokens, kv, kv, key_padding_mask=~key_mask.bool(), need_weights=False)
        x = (tokens + att).transpose(1, 2).reshape(b, c, h, w)
        x = F.interpolate(x, size=self.out_size, mode="bilinear", align_corners=False)
        return torch.sigmoid(self.dec(x))


def _as_map(tokens: torch.Tensor) -> torch.Tensor:
    side = int(round(tokens.shape[1] ** 0.5))
    if side * side != tokens.shape[1]:
        raise DataError(f"colourisation needs a square feature map; got {tokens.shape[1]} tokens")
    return tokens.transpose(1, 2).reshape(len(tokens), -1, side, side)


class PlipObjective(ImageTextObjective):
    """PLIP's three losses on an :class:`ImageTextModel`, as an engine objective.

    Args:
        model: the towers (text tower with per-token features; ResNet/ViT image trunk).
        source: the training source (``captions``, and batches' ``labels``).
        opts: the ``loss.plip`` section.
    """

    def __init__(self, model: ImageTextModel, source: Any, opts: PlipOptions) -> None:
        super().__init__()
        opts.validate()
        self.model, self.opts = model, opts
        self.tokens = CaptionTokens(model.text, list(source.captions), opts.attribute_words, opts.colour_words)
        table = identity_table(source, opts.identity)
        self.register_buffer("identity", table if table is not None else torch.zeros(0, dtype=torch.int64),
                             persistent=False)
        fi, ft = int(model.image.feature_dim), int(model.text.feature_dim)
        if opts.colourise:
            self.colouriser = TextGuidedColouriser(fi, ft, opts.tic_width, opts.tic_size)
        if opts.attributes:
            if not bool(self.tokens.attr.any()):
                raise DataError(f"loss.plip.attributes: no caption contains any of {opts.attribute_words}")
            self.mlm = FusedMaskedLM(model.text.token_embedding, self.tokens.vocab, model.feature_dim,
                                     self.tokens.ids.shape[1], opts.mlm_width, opts.mlm_layers)

    def on_train_start(self, max_steps: int) -> None:
        if self.model.text_locked:
            self.tokens.fill_cache(self.model.text)

    def identities(self, labels: torch.Tensor) -> torch.Tensor:
        labels = labels.to(self.identity.device)
        return self.identity[labels] if self.identity.numel() else labels

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        rows = batch["caption_ids"].to(self.tokens.ids.device)
        img = self.model.encode_image(batch["images"])
        hidden = self.tokens.states(self.model.text, rows)
        txt = self.model.text_proj(masked_mean(hidden, self.tokens.mask[rows]))
        scale = self.model.logit_scale_value()
        ivlc = multi_positive_loss(img, txt, scale, self.identities(batch["labels"]))
        loss, logs = ivlc, {"loss_ivlc": ivlc.detach(), "logit_scale": scale.detach()}
        if self.opts.colourise:
            images = batch["images"].to(img.device)
            _, grey_tokens = self.model.encode_image_tokens(grey_images(images))
            keys = self.tokens.phrase[rows].clone()
            keys[:, 0] = True  # [CLS] is always a key: no caption leaves the attention empty
            pred = self.colouriser(_as_map(grey_tokens), hidden, keys)
            tic = F.l1_loss(pred, colour_target(images, self.opts.tic_size))
            loss = loss + self.opts.tic_weight * tic
            logs["loss_tic"] = tic.detach()
        if self.opts.attributes:
            iap, acc = self.mlm.loss(self.tokens.ids[rows], self.tokens.mask[rows], self.tokens.attr[rows],
                                     img, self.tokens.local)
            loss = loss + self.opts.iap_weight * iap
            logs.update(loss_iap=iap.detach(), iap_acc=acc)
        return loss, logs


@CLIP_OBJECTIVES.register("plip")
def _plip(model: ImageTextModel, source: Any, loss_cfg: Any) -> PlipObjective:
    return PlipObjective(model, source, loss_cfg.plip)
