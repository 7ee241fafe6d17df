"""M3I, all-in-one pre-training (papers.md 20, reduced): one InfoNCE bound on I(ŷ_s; y_t) for three
kinds of target (four terms), summed in a single stage on one backbone and one predictor.

    ŷ_s = g(f(x_s))                       the prediction from the source view x_s
    L = Σ_t w_t · InfoNCE(ŷ_s, y_t; τ)    t ∈ {view, label, text, pairs}

* ``view`` (self-supervised): y_t = h'(f'(x_2)), a second augmented view through an EMA
  (momentum) copy of the encoder f and projector h (as MoCo / BYOL targets);
* ``label`` (supervised): y_t = E[y], a learnable class embedding;
* ``text`` (weakly supervised): y_t = W · t(c), a learnable linear map of the frozen MiniLM
  embedding of a caption of the image (here a prompt template filled with its class name, the
  reduced setting of the paper's image-text term);
* ``pairs`` (weakly supervised, real captions): the same y_t = W · t(c) for the images of an
  image-text source (``pairs: coco_mini``): each step also draws ``pairs_batch`` of its training
  images, encodes them with the shared f and g, and scores them against one of their own captions
  (InfoNCE; a repeated image counts all its draws as positives). The captions are embedded once.

InfoNCE scores each prediction against every target of the batch; targets that are equal (the
same class or caption) are all positives, so duplicates are never negatives. A weight of 0 drops
a term, which gives the single objectives and the two-stage recipe (view only, then label only
from the first run's weights) with the same code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fmlab.errors import ConfigError
from fmlab.pretrain._ema import frozen_copy, momentum_update_
from fmlab.pretrain.base import Objective, register_objective, require
from fmlab.pretrain.heads import ProjectionHead

__all__ = ["M3I", "info_nce", "load_pairs"]

TEMPLATES = ("a photo of a {}.", "a blurry photo of a {}.", "a close-up photo of a {}.",
             "a low resolution photo of a {}.")


def info_nce(pred: Tensor, target: Tensor, temperature: float, ids: Tensor | None = None) -> Tensor:
    """−mean_i Σ_j q_ij log softmax_j(cos(ŷ_i, y_j)/τ): q uniform over the targets that share
    ``ids[i]`` (default: only y_i).

    Examples:
        >>> z = F.normalize(torch.eye(3), dim=-1)
        >>> float(info_nce(z, z, 0.01)) < 1e-6  # each prediction on its own target
        True
    """
    logits = F.normalize(pred.float(), dim=-1) @ F.normalize(target.float(), dim=-1).T / temperature
    if ids is None:
        return F.cross_entropy(logits, torch.arange(len(pred), device=pred.device))
    same = (ids.reshape(-1, 1) == ids.reshape(1, -1)).float()
    q = same / same.sum(1, keepdim=True)
    return -(q * F.log_softmax(logits, dim=1)).sum(1).mean()


@register_objective("m3i")
class M3I(Objective):
    """Single-stage sum of the view, label, text and pairs InfoNCE terms (see module doc).

    Args:
        encoder: the shared backbone f.
        num_classes: classes of the labels (for the label and text targets).
        class_names: the classes' names (captions for the text target).
        feature_dim: the encoder's feature size when it cannot be read from it.
        dim: the shared target space.
        view_weight, label_weight, text_weight: w_t (0 drops a term).
        temperature: τ.
        momentum: EMA rate of the view-target encoder.
        text_encoder: the frozen encoder of the captions.
        text_bank: pre-embedded ``(K, T, D_text)`` captions (tests; default: embed the templates).
        pairs: an image-text source (``coco_mini``, ``csv:PATH``, ``jsonl:PATH``) whose train
            split feeds the ``pairs`` term; ``""`` for none.
        pairs_weight: w_pairs (needs ``pairs``).
        pairs_batch: images of ``pairs`` per step.
        data_root: folder of the named sources (the run's ``data.data_root``; None: ``$FMLAB_DATA``).
        pair_bank: pre-loaded ``(images (N, H, W, C) uint8, caption embeddings (M, D_text),
            caption image rows (M,))`` (tests; default: load ``pairs`` and embed its captions).
    """

    needs = ("num_classes", "labels", "class_names", "data_root")
    filled_by_run = (*Objective.filled_by_run, "text_bank", "pair_bank")

    def __init__(self, encoder: nn.Module, num_classes: int, class_names: Sequence[str] | None = None,
                 feature_dim: int | None = None, dim: int = 128, view_weight: float = 1.0,
                 label_weight: float = 1.0, text_weight: float = 1.0, temperature: float = 0.2,
                 momentum: float = 0.99, text_encoder: str = "text:minilm",
                 text_bank: Tensor | None = None, pairs: str = "", pairs_weight: float = 0.0,
                 pairs_batch: int = 64, data_root: str | None = None,
                 pair_bank: tuple[Any, Tensor, Tensor] | None = None) -> None:
        super().__init__()
        self.weights = {"view": float(view_weight), "label": float(label_weight),
                        "text": float(text_weight), "pairs": float(pairs_weight)}
        if min(self.weights.values()) < 0 or sum(self.weights.values()) <= 0:
            raise ConfigError(f"view/label/text/pairs weights must be >= 0 and not all 0, got {self.weights}")
        if self.weights["pairs"] > 0 and not pairs and pair_bank is None:
            raise ConfigError("objective.pairs_weight > 0 needs objective.pairs (an image-text source, "
                              "e.g. coco_mini)")
        if pairs_batch < 1:
            raise ConfigError(f"objective.pairs_batch must be >= 1, got {pairs_batch}")
        if temperature <= 0 or not 0 <= momentum <= 1:
            raise ConfigError(f"temperature must be > 0 and momentum in [0, 1], got {temperature}, {momentum}")
        self._set_encoder(encoder, feature_dim)
        self.temperature, self.momentum = float(temperature), float(momentum)
        self.predictor = ProjectionHead(self.feature_dim, 2 * dim, dim, 2)
        if self.weights["view"] > 0:
            self.target_encoder = frozen_copy(self.encoder)
            self.target_head = frozen_copy(self.predictor)
        if self.weights["label"] > 0:
            self.class_embed = nn.Parameter(torch.randn(num_classes, dim) * 0.02)
        if self.weights["text"] > 0:
            if text_bank is None:
                text_bank = self._embed_captions(class_names, num_classes, text_encoder)
            self.register_buffer("text_bank", text_bank.float(), persistent=False)
            self.text_proj = nn.Linear(text_bank.shape[-1], dim)
        self.pairs_batch = int(pairs_batch)
        if self.weights["pairs"] > 0:
            raw, emb, rows = pair_bank if pair_bank is not None else load_pairs(pairs, data_root, text_encoder)
            # preprocessed once (the backbone's own resize + normalisation), kept on the CPU
            self._pair_images = self.prepare(raw).cpu()
            self.register_buffer("pair_text", torch.as_tensor(emb).float(), persistent=False)
            self.register_buffer("pair_rows", torch.as_tensor(rows).long(), persistent=False)
            if not hasattr(self, "text_proj"):
                self.text_proj = nn.Linear(self.pair_text.shape[-1], dim)

    @staticmethod
    def _embed_captions(class_names: Sequence[str] | None, k: int, text_encoder: str) -> Tensor:
        from fmlab.models.text import create_text_encoder

        names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
        enc = create_text_encoder(text_encoder)
        with torch.no_grad():
            emb = enc.encode([t.format(c) for c in names for t in TEMPLATES])
        return emb.reshape(k, len(TEMPLATES), -1)

    def forward(self, batch: Mapping[str, Any]) -> tuple[Tensor, dict[str, Any]]:
        x1, x2 = require(batch, "views", "m3i")
        labels = require(batch, "labels", "m3i").long()
        pred = self.predictor(self.encoder(x1))
        terms: dict[str, Tensor] = {}
        if self.weights["view"] > 0:
            with torch.no_grad():
                target = self.target_head(self.target_encoder(x2))
            terms["view"] = info_nce(pred, target, self.temperature)
        if self.weights["label"] > 0:
            terms["label"] = info_nce(pred, self.class_embed[labels], self.temperature, labels)
        if self.weights["text"] > 0:
            j = torch.randint(self.text_bank.shape[1], labels.shape, device=labels.device)
            caption = self.text_proj(self.text_bank[labels, j])
            terms["text"] = info_nce(pred, caption, self.temperature, labels * self.text_bank.shape[1] + j)
        if self.weights["pairs"] > 0:
            terms["pairs"] = self._pairs_term(pred.device)
        loss = sum(self.weights[k] * v for k, v in terms.items())
        return loss, {f"loss_{k}": v.detach() for k, v in terms.items()}

    def _pairs_term(self, device: torch.device) -> Tensor:
        """InfoNCE between ``pairs_batch`` captions drawn at random (from the global RNG like every
        other draw, so resume replays it) and their images, each flipped with probability 1/2;
        captions of the same image share a positive id."""
        caps = torch.randint(len(self.pair_rows), (self.pairs_batch,))
        rows = self.pair_rows[caps.to(self.pair_rows.device)].cpu()
        x = self._pair_images[rows]
        flip = torch.rand(len(rows)) < 0.5
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x).to(device)
        pred = self.predictor(self.encoder(x))
        target = self.text_proj(self.pair_text[caps.to(self.pair_text.device)])
        return info_nce(pred, target, self.temperature, rows.to(device))

    def on_after_optimizer_step(self, step: int, max_steps: int) -> None:
        if self.weights["view"] > 0:
            momentum_update_(self.target_encoder, self.encoder, self.momentum)
            momentum_update_(self.target_head, self.predictor, self.momentum)

    @classmethod
    def default_transform(cls, image_size: int = 32, scale: tuple[float, float] = (0.08, 1.0),
                          jitter: float = 0.5, mean: Sequence[float] | None = None,
                          std: Sequence[float] | None = None, channels: int | None = None):
        """Two SimCLR views: the source x_s and the EMA target's x_2."""
        from fmlab.data import augment as A

        view = A.simclr_view(image_size, scale=scale, jitter=jitter,
                             mean=mean or A.IMAGENET_MEAN, std=std or A.IMAGENET_STD)
        return A.BatchTransform({"views": [view, view]}, channels=channels)


def load_pairs(spec: str, data_root: str | None, text_encoder: str) -> tuple[np.ndarray, Tensor, np.ndarray]:
    """The train split of an image-text source: its images (N, H, W, C) uint8, the frozen text
    embeddings of its captions (M, D) and each caption's image row (M,)."""
    from fmlab.data import open_source
    from fmlab.data.sources import ImageTextSource
    from fmlab.models.text import create_text_encoder

    source = open_source(spec, data_root)
    if not isinstance(source, ImageTextSource):
        raise ConfigError(f"objective.pairs: {spec!r} is not an image-text source (coco_mini, csv:PATH, "
                          f"jsonl:PATH)")
    split = source.split("train")
    images = split.images.get_batch(np.arange(len(split.images)))
    with torch.no_grad():
        emb = create_text_encoder(text_encoder).encode(list(split.captions))
    return images, emb, np.asarray(split.caption_image_index)
