"""SatMAE++ multi-scale MAE: reconstruct the masked patches at 1x, 2x and 4x the input scale.

MAE (keep floor(L (1 - r)) random patches of a low-resolution input, r = 0.75) whose decoder
output, reshaped to the g x g patch grid, also goes through a chain of convolutional upsampling
blocks (ConvTranspose 2x2 stride 2, GroupNorm, GELU, 3x3 conv; channels halve per block): the
grid at scale s is s g x s g and a 1x1 conv per scale predicts, in each cell, a p x p patch of
the image at s times the input resolution. Loss:

    L = sum_s w_s * L_MAE(pred_s, patchify_p(x_s), mask_s)

where x_s is the image at s H x s W, ``mask_s`` is the input mask repeated over the s x s fine
cells of each coarse patch, and L_MAE is MAE's masked-patch MSE with per-patch normalised targets.
With ``scales=(1,)`` this is exactly MAE.

Where the higher-resolution targets come from (the paper: inputs downsampled, targets are the
higher-resolution originals): the default transform crops at ``max(scales)`` times the model's
input size (EuroSAT's native 64 px for a 16 px model), the objective downsamples that view to the
input and to every target scale (bilinear, antialiased, as evaluation preprocessing resizes).
Images given at the input size only (``scales`` ignored) have their higher scales made by
bilinear upsampling (no new detail: only for tests and single-scale use).
Multi-spectral band grouping (the paper's second part) is not implemented: all channels share one
patch embedding (any channel count works).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fmlab.data.masks import mae_mask_fn, random_patch_mask
from fmlab.errors import ConfigError, DataError
from fmlab.pretrain.base import register_objective, require
from fmlab.pretrain.mae import MAE, fill_masked, mae_loss, masked_panels

__all__ = ["SatMAE", "patchify_at", "resize_images", "unpatchify_at", "upsample_mask"]


def patchify_at(images: Tensor, patch: int) -> Tensor:
    """(N, C, H, W) -> (N, (H/p)(W/p), p*p*C), patches in (row, col, channel) order as the ViT's.

    Examples:
        >>> import torch
        >>> patchify_at(torch.zeros(2, 3, 8, 8), 4).shape
        torch.Size([2, 4, 48])
    """
    n, c, h, w = images.shape
    if h % patch or w % patch:
        raise DataError(f"image size {h}x{w} is not a multiple of patch size {patch}")
    x = images.reshape(n, c, h // patch, patch, w // patch, patch)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(n, (h // patch) * (w // patch), patch * patch * c)


def unpatchify_at(x: Tensor, patch: int, channels: int) -> Tensor:
    """Inverse of :func:`patchify_at` for a square grid: (N, L, p*p*C) -> (N, C, H, W).

    Examples:
        >>> import torch
        >>> x = torch.rand(2, 3, 8, 8)
        >>> bool(torch.equal(unpatchify_at(patchify_at(x, 4), 4, 3), x))
        True
    """
    n, length, _ = x.shape
    g = math.isqrt(length)
    if g * g != length:
        raise DataError(f"{length} patches do not form a square grid")
    x = x.reshape(n, g, g, patch, patch, channels).permute(0, 5, 1, 3, 2, 4)
    return x.reshape(n, channels, g * patch, g * patch)


def upsample_mask(mask: Tensor, grid: int, factor: int) -> Tensor:
    """A (N, g*g) patch mask on the g x g grid -> (N, (f g)^2): each patch covers f x f cells.

    Examples:
        >>> import torch
        >>> upsample_mask(torch.tensor([[True, False, False, False]]), 2, 2).view(4, 4).int()
        tensor([[1, 1, 0, 0],
                [1, 1, 0, 0],
                [0, 0, 0, 0],
                [0, 0, 0, 0]], dtype=torch.int32)
    """
    m = mask.view(mask.shape[0], grid, grid)
    m = m.repeat_interleave(factor, dim=1).repeat_interleave(factor, dim=2)
    return m.reshape(mask.shape[0], -1)


def resize_images(x: Tensor, size: int) -> Tensor:
    """Bilinear (antialiased when shrinking) resize to ``size`` x ``size``; identity if equal."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                         antialias=size < x.shape[-1])


class _Upsample(nn.Module):
    """One 2x upsampling block: ConvTranspose(2, stride 2) -> GroupNorm -> GELU -> conv 3x3,
    halving the channels (keeps the 4x map affordable on a CPU)."""

    def __init__(self, dim: int, out: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.ConvTranspose2d(dim, out, 2, stride=2), nn.GroupNorm(1, out),
                                 nn.GELU(), nn.Conv2d(out, out, 3, padding=1))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


@register_objective("satmae")
class SatMAE(MAE):
    """Multi-scale MAE on ``batch["images"]`` (input size, or ``max(scales)`` times it)."""

    def __init__(self, encoder: nn.Module, mask_ratio: float = 0.75,
                 decoder_dim: int = 128, decoder_depth: int = 2, decoder_heads: int = 4,
                 norm_pix_loss: bool = True, scales: tuple[int, ...] = (1, 2, 4),
                 scale_weights: tuple[float, ...] = ()) -> None:
        super().__init__(encoder, mask_ratio, decoder_dim, decoder_depth, decoder_heads,
                         norm_pix_loss)
        scales = tuple(int(s) for s in scales)
        if not scales or scales[0] != 1 or any(b != 2 * a for a, b in zip(scales, scales[1:])):
            raise ConfigError(f"scales must be 1, 2, 4, ... (each twice the last), got {scales}")
        weights = tuple(float(w) for w in scale_weights) or (1.0,) * len(scales)
        if len(weights) != len(scales) or any(w < 0 for w in weights):
            raise ConfigError(f"scale_weights {weights} must be {len(scales)} values >= 0 "
                              f"(one per scale {scales}) or empty (all 1)")
        self.scales, self.scale_weights = scales, weights
        p, c = self.encoder.patch_size, self.encoder.in_chans
        dims = [max(8, decoder_dim >> i) for i in range(len(scales))]
        self.upsample = nn.ModuleList(_Upsample(a, b) for a, b in zip(dims, dims[1:]))
        self.scale_pred = nn.ModuleList(nn.Conv2d(d, p * p * c, 1) for d in dims[1:])

    def _views(self, images: Tensor) -> list[Tensor]:
        """The input-size image and one target image per scale, from the batch's images."""
        size, top = self.encoder.img_size, self.scales[-1]
        if images.shape[-1] not in (size, size * top) or images.shape[-2] != images.shape[-1]:
            raise DataError(f"SatMAE expects square {size}px or {size * top}px images, got "
                            f"{tuple(images.shape[-2:])}")
        return [resize_images(images, size * s) for s in (1, *self.scales)]

    def decode_scales(self, latent: Tensor, ids_keep: Tensor) -> list[Tensor]:
        """Encoder tokens -> per-scale predictions (N, (s g)^2, p*p*C), s in ``scales``."""
        pre, g = self.encoder.num_prefix_tokens, self.encoder.grid
        y = self.decoder_embed(latent)
        n, length = y.shape[0], self.encoder.num_patches
        full = self.mask_token.to(y.dtype).expand(n, length, -1).clone()
        full.scatter_(1, ids_keep.unsqueeze(-1).expand(-1, -1, y.shape[-1]), y[:, pre:])
        x = torch.cat([y[:, :pre], full + self.decoder_pos], dim=1)
        for blk in self.decoder_blocks:
            x = blk(x)
        x = self.decoder_norm(x)[:, pre:]
        preds = [self.decoder_pred(x)]
        fmap = x.transpose(1, 2).reshape(n, -1, g, g)
        for up, head in zip(self.upsample, self.scale_pred):
            fmap = up(fmap)
            preds.append(head(fmap).flatten(2).transpose(1, 2))
        return preds

    def forward(self, batch: Mapping[str, Any]) -> tuple[Tensor, dict[str, Any]]:
        images = require(batch, "images", type(self).__name__)
        x_in, *targets = self._views(images)
        ids_keep, mask = self._mask(batch, x_in.shape[0], x_in.device)
        latent = self.encoder.forward_tokens(x_in, ids_keep=ids_keep)
        preds = self.decode_scales(latent, ids_keep)
        p, g = self.encoder.patch_size, self.encoder.grid
        loss = x_in.new_zeros(())
        logs: dict[str, Any] = {"mask_ratio": mask.float().mean()}
        for s, w, pred, target in zip(self.scales, self.scale_weights, preds, targets):
            term = mae_loss(pred, patchify_at(target, p), upsample_mask(mask, g, s),
                            self.norm_pix_loss)
            loss = loss + w * term
            logs[f"loss_x{s}"] = term.detach()
        logs["loss"] = loss.detach()
        return loss, logs

    def save_picture(self, images: Tensor, path: Any) -> Any:
        """Input | mask | reconstruction at each scale (shown at the input's display size; the
        higher scales' true patches come from the upsampled input here)."""
        from fmlab.pretrain._picture import save_panels

        x_in, *targets = self._views(images)
        m = random_patch_mask(x_in.shape[0], self.encoder.num_patches, self.mask_ratio, None,
                              x_in.device)
        preds = self.decode_scales(self.encoder.forward_tokens(x_in, ids_keep=m.ids_keep),
                                   m.ids_keep)
        p, g = self.encoder.patch_size, self.encoder.grid
        recon = []
        for s, pred, target in zip(self.scales, preds, targets):
            filled = fill_masked(patchify_at(target, p), pred, upsample_mask(m.mask, g, s),
                                 self.norm_pix_loss)
            recon.append(unpatchify_at(filled, p, target.shape[1]))
        panels = masked_panels(x_in, recon, m.mask, g, self.preprocess)
        return save_panels(path, panels, ["input", "mask"] + [f"recon x{s}" for s in self.scales])

    def transform_image_size(self, input_size: int) -> int:
        """The transform crops at the top scale: the targets keep its detail."""
        return int(input_size) * self.scales[-1]

    def transform_arguments(self) -> dict[str, Any]:
        """Masks on the input's patch grid, drawn from the top-scale view (patch p * top)."""
        return {"patch_size": int(self.encoder.patch_size) * self.scales[-1],
                "mask_ratio": float(self.mask_ratio)}

    @classmethod
    def default_transform(cls, image_size: int = 64, patch_size: int = 8,
                          mask_ratio: float = 0.75, scale: tuple[float, float] = (0.2, 1.0),
                          mean: Sequence[float] | None = None,
                          std: Sequence[float] | None = None, channels: int | None = None):
        """RRC + flip + normalise at the top scale -> ``images``, plus ``ids_keep``/``mask``."""
        from fmlab.data.augment import masked_transform

        return masked_transform(lambda length: mae_mask_fn(length, mask_ratio), image_size,
                                patch_size, scale, mean, std, channels)

