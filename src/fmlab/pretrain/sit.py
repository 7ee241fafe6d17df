"""SiT: self-supervised vision transformer (Atito et al. 2021) -- three pretext tasks, one ViT.

Each image gives two augmented views. Every view is rotated by k x 90 degrees (k uniform in
0..3, the rotation label) and then corrupted by *group masking*: a fraction ``corrupt_ratio`` of
the ViT's patches, in connected blobs (a smooth random field on the patch grid, its top-k
positions), is replaced by Gaussian noise (probability ``noise_p`` per image) or by the same
pixels of another image of the batch. The ViT gets two prefix tokens, the encoder's cls token
(contrastive) and a rotation token, before the patch tokens, and is trained on

    L_recon = mean |decoder(patch tokens) - clean rotated view|      (l1 over every pixel)
    L_rot   = CE(rot_head(rotation token), k)
    L_con   = NT-Xent(proj(cls token of view 1), proj(cls token of view 2)), tau = 0.2

combined with fixed weights (sum_i w_i L_i) or Kendall et al.'s uncertainty weighting,
sum_i [exp(-s_i) L_i + s_i] / 2 with learned s_i = log sigma_i^2 (the default, as in SiT).
The exported encoder is the plain ViT (its cls token is the contrastive token); the rotation
token belongs to the objective, so frozen features are the contrastive token's output without it.
The decoder is one linear layer per patch token (a light stand-in for SiT's conv decoder).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fmlab.errors import ConfigError, DataError
from fmlab.models.vit import VisionTransformer
from fmlab.pretrain.base import Objective, register_objective, require
from fmlab.pretrain.heads import ProjectionHead
from fmlab.pretrain.simclr import contrastive_loss

__all__ = ["SiT", "SiTTransform", "group_mask", "rotate_batch", "sit_corrupt", "uncertainty_sum"]

WEIGHTINGS = ("uncertainty", "fixed")


def group_mask(n: int, grid: int, ratio: float, generator: torch.Generator) -> Tensor:
    """(n, grid*grid) bool: exactly ``round(grid^2 * ratio)`` True per row, in connected blobs.

    A coarse uniform field (grid/2 per side) is upsampled bilinearly, so neighbouring patches
    get similar scores, and each row's highest scores are masked.

    Examples:
        >>> m = group_mask(3, 8, 0.5, torch.Generator().manual_seed(0))
        >>> m.shape, m.sum(1).tolist()
        (torch.Size([3, 64]), [32, 32, 32])
    """
    if not 0.0 <= ratio < 1.0:
        raise ConfigError(f"corrupt_ratio must be in [0, 1), got {ratio}")
    length = grid * grid
    k = round(length * ratio)
    dev = generator.device
    coarse = max(2, grid // 2)
    field = torch.rand(n, 1, coarse, coarse, generator=generator, device=dev)
    score = F.interpolate(field, size=(grid, grid), mode="bilinear", align_corners=False)
    score = score.reshape(n, length) + 1e-3 * torch.rand(n, length, generator=generator, device=dev)
    mask = torch.zeros(n, length, dtype=torch.bool, device=dev)
    if k:
        mask.scatter_(1, score.topk(k, dim=1).indices, True)
    return mask


def rotate_batch(x: Tensor, k: Tensor) -> Tensor:
    """Rotate each square image ``x[i]`` by ``k[i]`` x 90 degrees (counter-clockwise).

    Examples:
        >>> x = torch.arange(4.).view(1, 1, 2, 2)
        >>> rotate_batch(x, torch.tensor([1]))[0, 0].tolist()
        [[1.0, 3.0], [0.0, 2.0]]
    """
    out = x.clone()
    for r in range(1, 4):
        idx = (k == r).nonzero().flatten()
        if idx.numel():
            out[idx] = torch.rot90(x[idx], r, dims=(2, 3))
    return out


def sit_corrupt(images: Tensor, patch_size: int, ratio: float, noise_p: float,
                generator: torch.Generator, rotate: bool = True) -> dict[str, Tensor]:
    """Rotate, then group-mask-and-replace a batch of (N, C, H, W) normalised images.

    Args:
        images: the clean views.
        patch_size: the ViT's patch size (the grid the groups live on).
        ratio: fraction of patches corrupted.
        noise_p: probability, per image, that the holes get Gaussian noise rather than the
            pixels of the next image in the batch.
        generator: all draws come from it.
        rotate: draw rotations (False: k = 0 for every image).

    Returns:
        ``clean`` (rotated views, the targets), ``corrupted``, ``rot_labels`` (N,) and
        ``corrupt_mask`` (N, L) bool.
    """
    n, _c, h, w = images.shape
    if h != w or h % patch_size:
        raise DataError(f"SiT needs square images divisible by the patch size {patch_size}, "
                        f"got {h}x{w}")
    dev, grid = generator.device, h // patch_size
    k = (torch.randint(0, 4, (n,), generator=generator, device=dev) if rotate
         else torch.zeros(n, dtype=torch.long, device=dev)).to(images.device)
    clean = rotate_batch(images, k)
    mask = group_mask(n, grid, ratio, generator).to(images.device)
    noise = torch.randn(images.shape, generator=generator, device=dev).to(images)
    use_noise = (torch.rand(n, generator=generator, device=dev) < noise_p).to(images.device)
    fill = torch.where(use_noise.view(n, 1, 1, 1), noise, clean.roll(1, dims=0))
    px = F.interpolate(mask.view(n, 1, grid, grid).float(), size=(h, w), mode="nearest")
    corrupted = torch.where(px.to(images.device) > 0, fill, clean)
    return {"clean": clean, "corrupted": corrupted, "rot_labels": k, "corrupt_mask": mask}


def uncertainty_sum(losses: Tensor, log_vars: Tensor) -> Tensor:
    """Kendall et al.'s weighting: sum_i [exp(-s_i) L_i + s_i] / 2 with s_i = log sigma_i^2.

    Examples:
        >>> float(uncertainty_sum(torch.tensor([2.0, 4.0]), torch.zeros(2)))
        3.0
    """
    return 0.5 * (torch.exp(-log_vars) * losses + log_vars).sum()


class SiTTransform:
    """Two augmented views, each rotated and corrupted (:func:`sit_corrupt`).

    Output: ``views`` (the clean rotated views: reconstruction targets), ``corrupted``,
    ``rot_labels`` and ``corrupt_mask`` (lists, one entry per view); other keys pass through.
    """

    def __init__(self, base: Any, patch_size: int, corrupt_ratio: float, noise_p: float) -> None:
        self.base, self.patch_size = base, int(patch_size)
        self.corrupt_ratio, self.noise_p = float(corrupt_ratio), float(noise_p)
        group_mask(1, 2, self.corrupt_ratio, torch.Generator())  # validates the ratio

    @property
    def outputs(self) -> dict[str, Any]:
        """The view pipelines (the pre-training run may prepend a resize to them)."""
        return self.base.outputs

    def __call__(self, batch: Mapping[str, Any], generator: torch.Generator) -> dict[str, Any]:
        out = self.base(batch, generator)
        parts = [sit_corrupt(v, self.patch_size, self.corrupt_ratio, self.noise_p, generator)
                 for v in out["views"]]
        out["views"] = [p["clean"] for p in parts]
        for key in ("corrupted", "rot_labels", "corrupt_mask"):
            out[key] = [p[key] for p in parts]
        return out

    def __repr__(self) -> str:
        return (f"SiTTransform({self.base!r}, patch_size={self.patch_size}, "
                f"corrupt_ratio={self.corrupt_ratio}, noise_p={self.noise_p})")


@register_objective("sit")
class SiT(Objective):
    """SiT on a :class:`VisionTransformer`; the batch comes from :class:`SiTTransform`."""

    transform_filled = (*Objective.transform_filled, "patch_size")

    def __init__(self, encoder: VisionTransformer, temperature: float = 0.2,
                 proj_hidden_dim: int = 512, proj_dim: int = 128,
                 weighting: str = "uncertainty", recon_weight: float = 1.0,
                 rot_weight: float = 1.0, contrast_weight: float = 1.0) -> None:
        super().__init__()
        trunk = getattr(encoder, "trunk", encoder)
        if not isinstance(trunk, VisionTransformer):
            raise ConfigError(f"SiT needs a fmlab.models.vit.VisionTransformer encoder, got "
                              f"{type(trunk).__name__}")
        if trunk.cls_token is None:
            raise ConfigError("SiT needs a ViT with a class token (class_token=True)")
        if weighting not in WEIGHTINGS:
            raise ConfigError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
        if temperature <= 0:
            raise ConfigError(f"temperature must be > 0, got {temperature}")
        self._set_encoder(encoder, None)
        d, p, c = trunk.embed_dim, trunk.patch_size, trunk.in_chans
        self.rot_token = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        self.recon_head = nn.Linear(d, p * p * c)
        self.rot_head = nn.Linear(d, 4)
        self.proj = ProjectionHead(d, proj_hidden_dim, proj_dim, 2)
        self.log_vars = nn.Parameter(torch.zeros(3), requires_grad=weighting == "uncertainty")
        self.register_buffer("weights", torch.tensor([recon_weight, rot_weight, contrast_weight]),
                             persistent=False)
        self.temperature, self.weighting = float(temperature), weighting

    def tokens(self, x: Tensor) -> Tensor:
        """(N, 2 + L, D): [cls (contrastive), rotation, patches] after the ViT's blocks."""
        enc = self.encoder
        t = enc.embed_patches(x)
        prefix = torch.cat([enc.cls_token, self.rot_token], dim=1).to(t.dtype)
        t = torch.cat([prefix.expand(t.shape[0], -1, -1), t], dim=1)
        for blk in enc.blocks:
            t = blk(t)
        return enc.norm(t)

    def reconstruct(self, tokens: Tensor) -> Tensor:
        """Patch tokens -> the image (N, C, H, W)."""
        return self.encoder.unpatchify(self.recon_head(tokens[:, 2:]))

    def forward(self, batch: Mapping[str, Any]) -> tuple[Tensor, dict[str, Any]]:
        who = type(self).__name__
        clean = require(batch, "views", who)
        corrupted = require(batch, "corrupted", who)
        rot = require(batch, "rot_labels", who)
        if len(clean) < 2 or len(corrupted) != len(clean) or len(rot) != len(clean):
            raise DataError(f"SiT needs >= 2 views with matching 'corrupted' and 'rot_labels', "
                            f"got {len(clean)}, {len(corrupted)}, {len(rot)}")
        t = self.tokens(torch.cat(list(corrupted)))
        recon = F.l1_loss(self.reconstruct(t).float(), torch.cat(list(clean)).float())
        labels = torch.cat(list(rot)).to(t.device).long()
        rot_logits = self.rot_head(t[:, 1]).float()
        rot_loss = F.cross_entropy(rot_logits, labels)
        z = self.proj(t[:, 0]).chunk(len(clean))
        con_loss, con_acc = contrastive_loss(list(z), self.temperature)
        losses = torch.stack([recon, rot_loss, con_loss])
        if self.weighting == "uncertainty":
            loss = uncertainty_sum(losses, self.log_vars.float())
        else:
            loss = (self.weights * losses).sum()
        logs = {"loss": loss.detach(), "recon_l1": recon.detach(), "rot_ce": rot_loss.detach(),
                "contrast": con_loss.detach(), "pos_top1": con_acc,
                "rot_acc": (rot_logits.argmax(1) == labels).float().mean()}
        return loss, logs

    def transform_arguments(self) -> dict[str, Any]:
        """Corruption groups live on the encoder's patch grid."""
        return {"patch_size": int(self.encoder.patch_size)}

    def save_picture(self, images: Tensor, path: Any) -> Any:
        """Input | corrupted input (holes in grey) | reconstruction of the clean image."""
        from fmlab.pretrain._picture import denormalize, patch_mask_image, save_panels

        seed = int(torch.randint(0, 2**31 - 1, (1,)))
        parts = sit_corrupt(images, self.encoder.patch_size, 0.5, 0.5,
                            torch.Generator().manual_seed(seed), rotate=False)
        recon = self.reconstruct(self.tokens(parts["corrupted"]))
        spec = self.preprocess
        mean, std = getattr(spec, "mean", None), getattr(spec, "std", None)
        m = patch_mask_image(parts["corrupt_mask"], self.encoder.grid, images.shape[-1])
        return save_panels(path, [denormalize(images, mean, std), m.repeat(1, 3, 1, 1),
                                  denormalize(parts["corrupted"], mean, std),
                                  denormalize(recon, mean, std)],
                           ["input", "mask", "corrupted", "recon"])

    @classmethod
    def default_transform(cls, image_size: int = 32, patch_size: int = 4,
                          corrupt_ratio: float = 0.5, noise_p: float = 0.5,
                          scale: tuple[float, float] = (0.2, 1.0), jitter: float = 0.5,
                          mean: Sequence[float] | None = None,
                          std: Sequence[float] | None = None, channels: int | None = None):
        """Two SimCLR-style views (RRC, flip, colour jitter), each rotated and corrupted."""
        from fmlab.data import augment as A

        if image_size % patch_size:
            raise ConfigError(f"image_size {image_size} is not a multiple of patch_size "
                              f"{patch_size}")
        view = A.simclr_view(image_size, scale=scale, jitter=jitter,
                             mean=mean or A.IMAGENET_MEAN, std=std or A.IMAGENET_STD)
        base = A.BatchTransform({"views": [view, view]}, channels=channels)
        return SiTTransform(base, patch_size, corrupt_ratio, noise_p)
