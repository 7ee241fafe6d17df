"""CroCo: cross-view completion. Reconstruct a 90 %-masked view from its visible patches and a
second, intact view of the same scene.

View 1 keeps floor(L (1 - r)) random patches (r = 0.9); view 2 is whole. One ViT encoder (shared
weights) encodes the visible view-1 patches and all view-2 patches. The decoder embeds view-1
tokens, fills the masked slots with a learnable mask token, adds fixed 2-D sin-cos positions and
runs blocks of self-attention over view-1 tokens, cross-attention from view-1 tokens (queries) to
the embedded view-2 tokens (keys/values, with their own positions) and an MLP, then predicts each
view-1 patch's pixels. Loss: MAE's per-patch MSE on normalised pixels, over the masked view-1
patches only. Without view 2 nothing could fill a 90 % hole; the cross-attention is what makes the
encoder's features carry where things are in both views.

Pairs: ``batch["images"]`` / ``batch["images2"]`` from :class:`fmlab.data.pairs.PairTransform`
(view 2 = view 1 under a random homography; CroCo uses real multi-view pairs). Masks from
``batch["ids_keep"]`` or torch's global RNG, as MAE. ``batch["targets"]`` (optional) replaces
view 1 as the reconstruction target (tests use it to perturb targets alone).
The CPU decoder (128-d, 2 blocks, 4 heads) replaces CroCo's 512-d, 8-block one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from fmlab.data.masks import mae_mask_fn, random_patch_mask
from fmlab.errors import DataError
from fmlab.models.vit import Attention
from fmlab.pretrain.base import register_objective, require
from fmlab.pretrain.mae import MAE, fill_masked, mae_loss, masked_panels

__all__ = ["CroCo", "CrossBlock"]


class CrossBlock(nn.Module):
    """Pre-norm decoder block: self-attention, cross-attention to ``memory``, MLP."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.norm_q = nn.LayerNorm(dim, eps=1e-6)
        self.norm_kv = nn.LayerNorm(dim, eps=1e-6)
        self.cross = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor, memory: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        kv = self.norm_kv(memory)
        x = x + self.cross(self.norm_q(x), kv, kv, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


@register_objective("croco")
class CroCo(MAE):
    """Cross-view completion on ``batch["images"]`` (masked) and ``batch["images2"]``."""

    def __init__(self, encoder: nn.Module, mask_ratio: float = 0.9,
                 decoder_dim: int = 128, decoder_depth: int = 2, decoder_heads: int = 4,
                 norm_pix_loss: bool = True) -> None:
        super().__init__(encoder, mask_ratio, decoder_dim, decoder_depth, decoder_heads,
                         norm_pix_loss)
        self.decoder_blocks = nn.ModuleList(
            CrossBlock(decoder_dim, decoder_heads) for _ in range(decoder_depth))

    def decode_pair(self, latent1: Tensor, ids_keep: Tensor, latent2: Tensor) -> Tensor:
        """View-1 tokens (visible only) and view-2 tokens (all) -> pixels of every view-1 patch."""
        pre = self.encoder.num_prefix_tokens
        y = self.decoder_embed(latent1)
        n, length = y.shape[0], self.encoder.num_patches
        full = self.mask_token.to(y.dtype).expand(n, length, -1).clone()
        full.scatter_(1, ids_keep.unsqueeze(-1).expand(-1, -1, y.shape[-1]), y[:, pre:])
        x = torch.cat([y[:, :pre], full + self.decoder_pos], dim=1)
        m = self.decoder_embed(latent2)
        memory = torch.cat([m[:, :pre], m[:, pre:] + self.decoder_pos], dim=1)
        for blk in self.decoder_blocks:
            x = blk(x, memory)
        return self.decoder_pred(self.decoder_norm(x))[:, pre:]

    def forward(self, batch: Mapping[str, Any]) -> tuple[Tensor, dict[str, Any]]:
        who = type(self).__name__
        view1, view2 = require(batch, "images", who), require(batch, "images2", who)
        size = self.encoder.img_size
        for name, v in (("images", view1), ("images2", view2)):
            if tuple(v.shape[-2:]) != (size, size):
                raise DataError(f"CroCo expects {size}px batch[{name!r}], got "
                                f"{tuple(v.shape[-2:])}")
        ids_keep, mask = self._mask(batch, view1.shape[0], view1.device)
        latent1 = self.encoder.forward_tokens(view1, ids_keep=ids_keep)
        latent2 = self.encoder.forward_tokens(view2)
        pred = self.decode_pair(latent1, ids_keep, latent2)
        target = batch.get("targets", view1)
        loss = mae_loss(pred, self.encoder.patchify(target), mask, self.norm_pix_loss)
        return loss, {"loss": loss.detach(), "mask_ratio": mask.float().mean()}

    def save_picture(self, images: Tensor, path: Any) -> Any:
        """View 2 | view 1 | its 90 % mask | reconstruction (warps drawn from the global RNG)."""
        from fmlab.data.pairs import RandomWarp
        from fmlab.pretrain._picture import denormalize, save_panels

        view2, _ = RandomWarp()(images, torch.Generator().manual_seed(0))
        m = random_patch_mask(images.shape[0], self.encoder.num_patches, self.mask_ratio, None,
                              images.device)
        pred = self.decode_pair(self.encoder.forward_tokens(images, ids_keep=m.ids_keep),
                                m.ids_keep, self.encoder.forward_tokens(view2))
        patches = self.encoder.patchify(images)
        recon = self.encoder.unpatchify(fill_masked(patches, pred, m.mask, self.norm_pix_loss))
        panels = masked_panels(images, [recon], m.mask, self.encoder.grid, self.preprocess)
        spec = self.preprocess
        v2 = denormalize(view2, getattr(spec, "mean", None), getattr(spec, "std", None))
        return save_panels(path, [v2, *panels], ["view 2", "view 1", "mask", "reconstruction"])

    @classmethod
    def default_transform(cls, image_size: int = 32, patch_size: int = 4,
                          mask_ratio: float = 0.9, scale: tuple[float, float] = (0.5, 1.0),
                          max_shift: float = 0.25, max_rotate: float = 0.26,
                          max_log_scale: float = 0.2, perspective: float = 0.0,
                          mean: Sequence[float] | None = None,
                          std: Sequence[float] | None = None, channels: int | None = None):
        """View 1: RRC + flip + normalise; view 2: view 1 under a random warp; 90 % mask."""
        from fmlab.data.augment import IMAGENET_MEAN, IMAGENET_STD
        from fmlab.data.pairs import PairTransform, RandomWarp
        from fmlab.data.recipes import mae_view

        view = mae_view(image_size, scale, mean=mean or IMAGENET_MEAN, std=std or IMAGENET_STD)
        warp = RandomWarp(max_shift, max_rotate, max_log_scale, perspective)
        length = (image_size // patch_size) ** 2
        return PairTransform(view, warp, channels, masks=[mae_mask_fn(length, mask_ratio)])
