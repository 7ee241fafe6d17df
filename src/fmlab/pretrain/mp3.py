"""MP3: masked position prediction (Zhai et al., ICML 2022, arXiv 2207.07611).

A ViT *without* position embeddings sees the patches as an unordered set and must classify each
patch token's position among all L positions (cross-entropy). For efficiency and difficulty, in
every block only a random context subset of floor(L (1 - r)) patch tokens (plus the cls token)
provide keys and values; all patch tokens are queries, so every token gets a prediction.

Defaults: masking ratio r = 0.75 (our choice: the notes we have give 0.5-0.75 and we did not
verify the paper's value), linear position head. For fine-tuning, the encoder can be given
zero-initialised position embeddings (the paper's recipe); that belongs to the fine-tune code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fmlab.data.masks import context_subset, mp3_context_fn, num_kept
from fmlab.errors import ConfigError, DataError
from fmlab.models.vit import VisionTransformer
from fmlab.pretrain.base import ExportPatch, Objective, register_objective, require

__all__ = ["MP3", "position_loss"]


def position_loss(logits: Tensor) -> tuple[Tensor, Tensor]:
    """Cross-entropy of each patch token's position logits against its true position.

    Args:
        logits: (N, L, L); row i scores the position of patch token i.

    Returns:
        ``(loss, acc)``: the mean cross-entropy against targets 0..L-1 and the accuracy.

    Examples:
        >>> import torch
        >>> loss, acc = position_loss(10 * torch.eye(4).expand(2, 4, 4))
        >>> float(acc), bool(loss < 0.01)
        (1.0, True)
    """
    n, length, classes = logits.shape
    logits = logits.float()
    target = torch.arange(length, device=logits.device).expand(n, length)
    loss = F.cross_entropy(logits.reshape(n * length, classes), target.reshape(-1))
    acc = (logits.argmax(-1) == target).float().mean()
    return loss, acc


@register_objective("mp3")
class MP3(Objective):
    """Position prediction on ``batch["images"]`` with context ids ``batch["context_ids"]``."""

    transform_filled = (*Objective.transform_filled, "patch_size", "mask_ratio")

    def __init__(self, encoder: nn.Module, mask_ratio: float = 0.75) -> None:
        super().__init__()
        trunk = getattr(encoder, "trunk", encoder)  # a Backbone("vit_tiny_cifar") is fine too
        if not isinstance(trunk, VisionTransformer):
            raise ConfigError(f"MP3 needs a fmlab.models.vit.VisionTransformer encoder, got "
                              f"{type(trunk).__name__}")
        if trunk.pos_embed is not None:
            raise ConfigError("MP3 needs a ViT without position embeddings (pos_embed=False)")
        num_kept(trunk.num_patches, mask_ratio)
        self._set_encoder(encoder, None)
        self.mask_ratio = float(mask_ratio)
        self.head = nn.Linear(trunk.embed_dim, trunk.num_patches)

    def _context(self, batch: Mapping[str, Any], n: int, device: torch.device) -> Tensor:
        length = self.encoder.num_patches
        if "context_ids" in batch:
            ctx = batch["context_ids"].to(device)
            if ctx.shape[0] != n or ctx.max() >= length:
                raise DataError(f"batch['context_ids'] of shape {tuple(ctx.shape)} does not fit "
                                f"{n} images of {length} patches")
            return ctx
        return context_subset(n, length, self.mask_ratio, None, device)

    def position_logits(self, images: Tensor, context_ids: Tensor | None) -> Tensor:
        """(N, L, L) logits: row i scores the position of patch token i."""
        tokens = self.encoder.forward_tokens(images, context_ids=context_ids)
        return self.head(tokens[:, self.encoder.num_prefix_tokens:])

    def forward(self, batch: Mapping[str, Any]) -> tuple[Tensor, dict[str, Any]]:
        images = require(batch, "images", type(self).__name__)
        grid = (images.shape[-2] // self.encoder.patch_size,
                images.shape[-1] // self.encoder.patch_size)
        if grid != (self.encoder.grid, self.encoder.grid):
            raise DataError(f"MP3 expects {self.encoder.img_size}px images (one class per "
                            f"position), got {tuple(images.shape[-2:])}")
        ctx = self._context(batch, images.shape[0], images.device)
        loss, acc = position_loss(self.position_logits(images, ctx))
        return loss, {"loss": loss.detach(), "pos_acc": acc}

    def transform_arguments(self) -> dict[str, Any]:
        """The context subsets the transform draws follow the patch grid and ``mask_ratio``."""
        return {"patch_size": int(self.encoder.patch_size), "mask_ratio": float(self.mask_ratio)}

    def export_patch(self, train_kwargs: Mapping[str, Any]) -> ExportPatch:
        """Add all-zero position embeddings (MP3's fine-tuning recipe): every feature stays the
        same and the file loads into the default ViT, without ``pos_embed=False``."""
        kwargs = dict(train_kwargs)
        if self.encoder.pos_embed is not None or kwargs.get("pos_embed") is not False:
            return ExportPatch({}, kwargs)
        kwargs.pop("pos_embed")
        zeros = torch.zeros(1, self.encoder.num_patches, self.encoder.embed_dim)
        return ExportPatch({"pos_embed": zeros}, kwargs, "MP3: zero position embeddings added")

    @classmethod
    def default_transform(cls, image_size: int = 32, patch_size: int = 4,
                          mask_ratio: float = 0.75, scale: tuple[float, float] = (0.2, 1.0),
                          mean: Sequence[float] | None = None,
                          std: Sequence[float] | None = None, channels: int | None = None):
        """RRC + flip + normalise -> ``images``, plus ``context_ids``."""
        from fmlab.data.augment import masked_transform

        return masked_transform(lambda length: mp3_context_fn(length, mask_ratio), image_size, patch_size,
                                scale, mean, std, channels)
