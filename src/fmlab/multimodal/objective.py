"""The engine objective for image-text training: ``loss, logs = objective(batch)``.

When the text tower is locked whole (LiT), every distinct caption's tower output is computed
once at ``on_train_start`` and looked up by ``caption_ids``: the tower's weights never change,
so this gives the same loss as running it per step, at a fraction of the cost on a CPU.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from collections.abc import Callable
from typing import Any

from fmlab.errors import ConfigError
from fmlab.multimodal.losses import LOSSES, clip_loss, multi_positive_loss, siglip_loss
from fmlab.multimodal.model import ImageTextModel
from fmlab.registry import Registry

#: ``loss.name`` of ``fmlab clip train`` → ``factory(model, source, loss_cfg) -> objective``.
#: ``source`` is the training dataset (it has ``captions``; labelled ones also ``labels``),
#: ``loss_cfg`` the config's ``loss`` section. A new image-text objective is one module that
#: registers itself here plus one line in :data:`OBJECTIVE_MODULES`.
CLIP_OBJECTIVES: Registry[Callable[..., nn.Module]] = Registry("image-text loss")

#: Modules imported before a ``loss.name`` lookup so their registrations run.
OBJECTIVE_MODULES: list[str] = [
    "fmlab.multimodal.clip_supcon",
    "fmlab.multimodal.interbert_objective",
    "fmlab.multimodal.lightclip",
    "fmlab.multimodal.plip",
]


def clip_objective_names() -> list[str]:
    """Every registered ``loss.name`` (after importing :data:`OBJECTIVE_MODULES`)."""
    _import_objective_modules()
    return CLIP_OBJECTIVES.names()


def _import_objective_modules() -> None:
    import importlib

    for mod in OBJECTIVE_MODULES:
        importlib.import_module(mod)


def check_clip_objective_name(name: str) -> None:
    """Raise :class:`~fmlab.errors.ConfigError` naming ``loss.name`` and the known names when
    ``name`` is not a registered image-text objective."""
    names = clip_objective_names()
    if name not in names:
        raise ConfigError(f"loss.name: {name!r} is not one of {', '.join(names)}")


def build_clip_objective(model: ImageTextModel, source: Any, loss_cfg: Any) -> nn.Module:
    """The engine objective named by ``loss_cfg.name``.

    Raises:
        fmlab.errors.ConfigError: an unknown name (the message lists the known ones).
    """
    check_clip_objective_name(loss_cfg.name)
    return CLIP_OBJECTIVES.get(loss_cfg.name)(model, source, loss_cfg)


class ImageTextObjective(nn.Module):
    """What every image-text engine objective shares: ``model`` (an :class:`ImageTextModel`) is
    the encoder the engine saves and embeds images with, and its logit scale is clamped after each
    optimiser step (CLIP's cap). Subclasses set ``self.model`` and define ``forward``."""

    model: ImageTextModel

    @property
    def encoder(self) -> ImageTextModel:
        return self.model

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(images)

    def on_after_optimizer_step(self, step: int, max_steps: int) -> None:
        self.model.clamp_logit_scale()


class ContrastiveObjective(ImageTextObjective):
    """The image-text contrastive loss of an :class:`ImageTextModel`, as an engine objective.

    A batch holds ``images`` (uint8 or preprocessed), ``caption_ids`` (rows of ``captions``) and,
    for ``multipos``, ``labels``; ``forward`` returns ``(loss, logs)`` with the logit scale (and
    bias) in the logs. :class:`~fmlab.engine.Trainer` owns the loop, optimiser and checkpoints.

    Args:
        model: the two towers with their projections and logit scale.
        captions: every caption the batches can point at.
        loss: ``"clip"`` (InfoNCE both ways), ``"siglip"`` (pairwise sigmoid; needs a logit
            bias) or ``"multipos"`` (captions of one class are all positives).
        cache_text: when the text tower is locked whole, encode each caption once at
            ``on_train_start`` instead of every step (same loss, much cheaper).
        text_batch_size: captions per forward pass while filling that cache.

    Raises:
        fmlab.errors.ConfigError: unknown ``loss``, or ``siglip`` without a logit bias.

    Examples:
        >>> import torch, torch.nn as nn
        >>> from fmlab.models import create_backbone
        >>> from fmlab.multimodal.model import ImageTextModel
        >>> class BagOfChars(nn.Module):  # a toy text tower: tokenize + forward(**tokens)
        ...     name, feature_dim = "toy-text", 8
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.emb = nn.EmbeddingBag(256, 8)
        ...     def tokenize(self, texts):
        ...         return {"ids": torch.tensor([[ord(c) % 256 for c in t[:6].ljust(6)] for t in texts])}
        ...     def forward(self, ids):
        ...         return self.emb(ids)
        >>> model = ImageTextModel(create_backbone("resnet_cifar", depth=8, width=8, seed=0), BagOfChars(),
        ...                        embed_dim=4)
        >>> obj = ContrastiveObjective(model, ["a cat", "a dog"], loss="clip")
        >>> loss, logs = obj({"images": torch.zeros((2, 32, 32, 3), dtype=torch.uint8),
        ...                   "caption_ids": torch.tensor([0, 1])})
        >>> loss.ndim, sorted(logs)
        (0, ['logit_scale'])
    """

    def __init__(self, model: ImageTextModel, captions: list[str], loss: str = "clip",
                 cache_text: bool = True, text_batch_size: int = 256) -> None:
        super().__init__()
        if loss not in LOSSES:
            raise ConfigError(f"loss.name: {loss!r} is not one of {', '.join(LOSSES)}")
        if loss == "siglip" and model.logit_bias is None:
            raise ConfigError("loss.name: siglip needs a logit bias (model.init_logit_bias, e.g. -10)")
        self.model = model
        self.captions = list(captions)
        self.loss_name = loss
        self.cache_text = cache_text
        self.text_batch_size = text_batch_size
        self.register_buffer("text_cache", torch.zeros(0), persistent=False)

    def on_train_start(self, max_steps: int) -> None:
        if self.cache_text and self.model.text_locked:
            was = self.model.text.training
            self.model.text.eval()
            with torch.no_grad():
                rows = [self.model.text(**{k: v.to(self.model.logit_scale.device) for k, v in
                                           self.model.text.tokenize(self.captions[i:i + self.text_batch_size]).items()})
                        for i in range(0, len(self.captions), self.text_batch_size)]
            self.model.text.train(was)
            self.text_cache = torch.cat(rows).float()

    def text_features(self, caption_ids: torch.Tensor) -> torch.Tensor:
        if self.text_cache.numel():
            return self.model.text_proj(self.text_cache[caption_ids.to(self.text_cache.device)])
        ids = caption_ids.tolist()
        return self.model.encode_text([self.captions[i] for i in ids])

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        img = self.model.encode_image(batch["images"])
        txt = self.text_features(batch["caption_ids"])
        scale = self.model.logit_scale_value()
        if self.loss_name == "clip":
            loss = clip_loss(img, txt, scale)
        elif self.loss_name == "siglip":
            loss = siglip_loss(img, txt, scale, self.model.logit_bias)
        else:
            loss = multi_positive_loss(img, txt, scale, batch["labels"])
        logs = {"logit_scale": scale.detach()}
        if self.model.logit_bias is not None:
            logs["logit_bias"] = self.model.logit_bias.detach()
        return loss, logs


def _contrastive(model: ImageTextModel, source: Any, loss_cfg: Any) -> ContrastiveObjective:
    return ContrastiveObjective(model, source.captions, loss_cfg.name, loss_cfg.cache_text)


for _name in LOSSES:
    CLIP_OBJECTIVES.add(_name, _contrastive)
