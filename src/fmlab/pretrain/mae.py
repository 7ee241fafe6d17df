"""MAE: encode the visible 25 % of patches, reconstruct the masked ones with a light decoder.

Per sample, keep floor(L (1 - r)) random patches (r = 0.75); the ViT encodes only those. The
decoder embeds them, fills the masked slots with a shared learnable mask token, adds fixed 2-D
sin-cos positions and predicts each patch's pixels. Target: patchified pixels, standardised per
patch with ``norm_pix_loss`` ((x - mean) / sqrt(var + 1e-6)). Loss: per-patch MSE averaged over
masked patches only.

Masks come from the batch (``ids_keep``, written by the default transform from the data
generator, so runs replay exactly) or, when absent, from torch's global RNG (which the engine
re-seeds from (seed, step, rank) every step).
The light CPU decoder (128-d, 2 blocks, 4 heads) replaces MAE's 512-d, 8-block one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from fmlab.data.masks import mae_mask_fn, num_kept, random_patch_mask
from fmlab.errors import ConfigError, DataError
from fmlab.models.vit import Block, VisionTransformer, sincos_pos_embed_2d
from fmlab.pretrain.base import Objective, register_objective, require

__all__ = ["MAE", "fill_masked", "mae_loss", "patch_targets"]


def patch_targets(patches: Tensor, norm_pix: bool = True, eps: float = 1e-6) -> Tensor:
    """Reconstruction targets from patchified pixels.

    Args:
        patches: (N, L, P) pixels per patch.
        norm_pix: standardise each patch (MAE's ``norm_pix_loss``); False returns the pixels.
        eps: added to the variance.

    Returns:
        (N, L, P) targets.

    Examples:
        >>> import torch
        >>> t = patch_targets(torch.rand(2, 4, 12))
        >>> bool(t.mean(-1).abs().max() < 1e-5)
        True
    """
    if not norm_pix:
        return patches
    mean = patches.mean(dim=-1, keepdim=True)
    var = patches.var(dim=-1, keepdim=True, unbiased=False)
    return (patches - mean) / (var + eps).sqrt()


def mae_loss(pred: Tensor, patches: Tensor, mask: Tensor, norm_pix: bool = True) -> Tensor:
    """sum_i m_i mean_d (pred - target)^2 / sum_i m_i: the error on masked patches only.

    Args:
        pred: (N, L, P) decoder predictions.
        patches: (N, L, P) pixels (targets via :func:`patch_targets`).
        mask: (N, L), True where the patch was masked.
        norm_pix: standardise the targets per patch.

    Returns:
        The scalar loss.

    Examples:
        >>> import torch
        >>> patches = torch.rand(2, 4, 12)
        >>> mask = torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0]]).bool()
        >>> pred = patch_targets(patches).clone()
        >>> pred[:, 3] += 1.0  # wrong only on visible patches: no loss
        >>> float(mae_loss(pred, patches, mask))
        0.0
    """
    target = patch_targets(patches.float(), norm_pix)
    per_patch = ((pred.float() - target) ** 2).mean(dim=-1)
    m = mask.to(per_patch.dtype)
    return (per_patch * m).sum() / m.sum().clamp(min=1.0)


def fill_masked(patches: Tensor, pred: Tensor, mask: Tensor, norm_pix: bool = True) -> Tensor:
    """Visible patches kept, masked ones replaced by predictions (for pictures).

    Normalised-pixel predictions are mapped back with each true patch's mean and std (MAE's own
    visualisation does the same), so only their structure is the model's.

    Args:
        patches: (N, L, P) true pixels per patch.
        pred: (N, L, P) predictions.
        mask: (N, L) True where the patch was masked.
        norm_pix: whether ``pred`` is in per-patch normalised units.

    Returns:
        (N, L, P) patches.

    Examples:
        >>> import torch
        >>> p = torch.rand(1, 2, 4)
        >>> out = fill_masked(p, patch_targets(p), torch.tensor([[True, False]]))
        >>> bool(torch.allclose(out, p, atol=1e-3))
        True
    """
    if norm_pix:
        mean = patches.mean(dim=-1, keepdim=True)
        std = (patches.var(dim=-1, keepdim=True, unbiased=False) + 1e-6).sqrt()
        pred = pred * std + mean
    return torch.where(mask.unsqueeze(-1), pred.to(patches.dtype), patches)


def masked_panels(images: Tensor, recon: Sequence[Tensor], mask: Tensor, grid: int,
                  spec: Any) -> list[Tensor]:
    """[input, masked input, *reconstructions] in [0, 1] at the input's size, for pictures."""
    from fmlab.pretrain._picture import denormalize, patch_mask_image
    from fmlab.pretrain.satmae import resize_images

    mean, std = getattr(spec, "mean", None), getattr(spec, "std", None)
    size = images.shape[-1]
    m = patch_mask_image(mask.cpu(), grid, size)
    inp = denormalize(images, mean, std)
    out = [inp, inp * (1 - m) + 0.5 * m]
    return out + [denormalize(resize_images(r.float(), size), mean, std) for r in recon]


@register_objective("mae")
class MAE(Objective):
    """Masked autoencoder on ``batch["images"]`` (float NCHW) with a ``VisionTransformer``."""

    transform_filled = (*Objective.transform_filled, "patch_size", "mask_ratio")

    def __init__(self, encoder: nn.Module, mask_ratio: float = 0.75,
                 decoder_dim: int = 128, decoder_depth: int = 2, decoder_heads: int = 4,
                 norm_pix_loss: bool = True) -> None:
        super().__init__()
        trunk = getattr(encoder, "trunk", encoder)  # a Backbone("vit_tiny_cifar") is fine too
        if not isinstance(trunk, VisionTransformer):
            raise ConfigError(f"MAE needs a fmlab.models.vit.VisionTransformer encoder, got "
                              f"{type(trunk).__name__}")
        if trunk.pos_embed is None:
            raise ConfigError("MAE needs a ViT with position embeddings (pos_embed=True)")
        num_kept(trunk.num_patches, mask_ratio)  # validates the ratio
        self._set_encoder(encoder, None)
        self.mask_ratio, self.norm_pix_loss = float(mask_ratio), norm_pix_loss
        p, c = trunk.patch_size, trunk.in_chans
        self.decoder_embed = nn.Linear(trunk.embed_dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        nn.init.normal_(self.mask_token, std=0.02)
        self.register_buffer("decoder_pos", sincos_pos_embed_2d(
            decoder_dim, trunk.grid, trunk.grid).unsqueeze(0), persistent=False)
        self.decoder_blocks = nn.ModuleList(
            Block(decoder_dim, decoder_heads) for _ in range(decoder_depth))
        self.decoder_norm = nn.LayerNorm(decoder_dim, eps=1e-6)
        self.decoder_pred = nn.Linear(decoder_dim, p * p * c)

    def _mask(self, batch: Mapping[str, Any], n: int, device: torch.device) -> tuple[Tensor,
                                                                                       Tensor]:
        length = self.encoder.num_patches
        if "ids_keep" in batch:
            ids_keep = batch["ids_keep"].to(device)
            if ids_keep.shape[0] != n or ids_keep.max() >= length:
                raise DataError(f"batch['ids_keep'] of shape {tuple(ids_keep.shape)} does not "
                                f"fit {n} images of {length} patches")
            mask = torch.ones(n, length, dtype=torch.bool, device=device)
            mask.scatter_(1, ids_keep, False)
            return ids_keep, mask
        m = random_patch_mask(n, length, self.mask_ratio, None, device)
        return m.ids_keep, m.mask

    def decode(self, latent: Tensor, ids_keep: Tensor) -> Tensor:
        """Encoder tokens (N, prefix + K, D) -> pixel predictions for all L patches."""
        pre = self.encoder.num_prefix_tokens
        y = self.decoder_embed(latent)
        n, length = y.shape[0], self.encoder.num_patches
        # under bf16 autocast y is bf16 while the mask token is fp32; scatter needs one dtype
        full = self.mask_token.to(y.dtype).expand(n, length, -1).clone()
        full.scatter_(1, ids_keep.unsqueeze(-1).expand(-1, -1, y.shape[-1]), y[:, pre:])
        x = torch.cat([y[:, :pre], full + self.decoder_pos], dim=1)
        for blk in self.decoder_blocks:
            x = blk(x)
        return self.decoder_pred(self.decoder_norm(x))[:, pre:]

    def forward(self, batch: Mapping[str, Any]) -> tuple[Tensor, dict[str, Any]]:
        images = require(batch, "images", type(self).__name__)
        if images.shape[-1] != self.encoder.img_size or images.shape[-2] != self.encoder.img_size:
            raise DataError(f"MAE expects {self.encoder.img_size}px images, got "
                            f"{tuple(images.shape[-2:])}")
        ids_keep, mask = self._mask(batch, images.shape[0], images.device)
        latent = self.encoder.forward_tokens(images, ids_keep=ids_keep)
        pred = self.decode(latent, ids_keep)
        loss = mae_loss(pred, self.encoder.patchify(images), mask, self.norm_pix_loss)
        return loss, {"loss": loss.detach(), "mask_ratio": mask.float().mean()}

    def save_picture(self, images: Tensor, path: Any) -> Any:
        """Input | mask | reconstruction (visible patches kept, masked ones predicted)."""
        from fmlab.pretrain._picture import save_panels

        m = random_patch_mask(images.shape[0], self.encoder.num_patches, self.mask_ratio, None,
                              images.device)
        pred = self.decode(self.encoder.forward_tokens(images, ids_keep=m.ids_keep), m.ids_keep)
        patches = self.encoder.patchify(images)
        recon = self.encoder.unpatchify(fill_masked(patches, pred, m.mask, self.norm_pix_loss))
        panels = masked_panels(images, [recon], m.mask, self.encoder.grid, self.preprocess)
        return save_panels(path, panels, ["input", "mask", "reconstruction"])

    def transform_arguments(self) -> dict[str, Any]:
        """The masks the transform draws follow the encoder's patch grid and ``mask_ratio``."""
        return {"patch_size": int(self.encoder.patch_size), "mask_ratio": float(self.mask_ratio)}

    @classmethod
    def default_transform(cls, image_size: int = 32, patch_size: int = 4,
                          mask_ratio: float = 0.75, scale: tuple[float, float] = (0.2, 1.0),
                          mean: Sequence[float] | None = None,
                          std: Sequence[float] | None = None, channels: int | None = None):
        """RRC (0.2, 1) + flip + normalise -> ``images``, plus ``ids_keep``/``mask``."""
        from fmlab.data.augment import masked_transform

        return masked_transform(lambda length: mae_mask_fn(length, mask_ratio), image_size, patch_size,
                                scale, mean, std, channels)
