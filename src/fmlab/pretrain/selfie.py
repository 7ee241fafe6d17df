"""Selfie: masked patch *selection* for a convolutional network (Trinh et al. 2019).

The image is cut into a ``grid x grid`` grid of patches (32 px -> 4 x 4 patches of 8 px). Every
patch is encoded on its own by the backbone (a CIFAR ResNet: the patch network P, and the part
that transfers): h_j = P(patch_j) in R^D. A random subset of positions is masked. An
attention-pooling network A (transformer blocks over a learned query token and the visible patch
vectors plus their position embeddings) summarises the visible content into u (the query
token's output). For each masked position i the query is v_i = u + pos_emb(i), and the loss is a
cross-entropy that picks the true patch vector among all masked patches of the same image:

    L = -mean_i log[ exp(v_i . h_i) / sum_{j masked} exp(v_i . h_j) ]

Candidates are ordered like the queries (``ids_masked`` ascending), so the target of query k is
candidate k. Defaults (our choices at CIFAR scale): mask ratio 0.5 (8 of 16 patches: 8
candidates), attention pooling with 2 blocks and 4 heads at the backbone's width, learned
position embeddings shared by the visible tokens and the queries. Masks come from the batch
(``ids_keep``/``mask``, drawn by the transform) or else from torch's global RNG.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fmlab.data.masks import batch_or_random_mask, mae_mask_fn, num_kept, random_patch_mask
from fmlab.errors import ConfigError, DataError
from fmlab.models.vit import Block
from fmlab.pretrain.base import Objective, register_objective, require

__all__ = ["Selfie", "cut_patches", "masked_ids", "selfie_loss"]


def cut_patches(images: Tensor, grid: int) -> Tensor:
    """(N, C, H, W) -> (N, grid*grid, C, H/grid, W/grid), positions in row-major order.

    Examples:
        >>> x = torch.arange(16.).view(1, 1, 4, 4)
        >>> cut_patches(x, 2)[0, 1, 0].tolist()  # the top-right patch
        [[2.0, 3.0], [6.0, 7.0]]
    """
    n, c, h, w = images.shape
    if h % grid or w % grid:
        raise DataError(f"Selfie: image size {h}x{w} is not divisible by the {grid}x{grid} grid")
    ph, pw = h // grid, w // grid
    x = images.reshape(n, c, grid, ph, grid, pw).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(n, grid * grid, c, ph, pw)


def masked_ids(mask: Tensor) -> Tensor:
    """(N, L) bool with the same count per row -> (N, M) ascending masked positions.

    Examples:
        >>> masked_ids(torch.tensor([[True, False, True], [False, True, True]])).tolist()
        [[0, 2], [1, 2]]
    """
    counts = mask.sum(1)
    if counts.numel() and not bool((counts == counts[0]).all()):
        raise DataError(f"Selfie needs the same number of masked patches per image, got "
                        f"{counts.tolist()}")
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    return positions[mask].view(mask.shape[0], -1)


def selfie_loss(queries: Tensor, candidates: Tensor) -> tuple[Tensor, Tensor]:
    """Cross-entropy of each query v_k over the image's masked-patch vectors; target: k.

    Args:
        queries: (N, M, D) v_i for the M masked positions of each image.
        candidates: (N, M, D) h_j of the same positions, in the same order.

    Returns:
        ``(loss, acc)``: mean CE and the fraction of queries whose best candidate is their own.

    Examples:
        >>> h = torch.eye(3).expand(2, 3, 3)
        >>> loss, acc = selfie_loss(10 * h, h)
        >>> float(acc), bool(loss < 1e-3)
        (1.0, True)
    """
    n, m, _ = queries.shape
    logits = queries.float() @ candidates.float().transpose(1, 2)  # (N, M, M): row k = query k
    target = torch.arange(m, device=logits.device).expand(n, m)
    loss = F.cross_entropy(logits.reshape(n * m, m), target.reshape(-1))
    acc = (logits.argmax(-1) == target).float().mean()
    return loss, acc


@register_objective("selfie")
class Selfie(Objective):
    """Selfie on ``batch["images"]`` (float NCHW) with ``batch["mask"]`` (N, grid^2), or a
    mask drawn from the global RNG when the batch has none."""

    transform_filled = (*Objective.transform_filled, "grid", "mask_ratio")

    def __init__(self, encoder: nn.Module, feature_dim: int | None = None, grid: int = 4,
                 mask_ratio: float = 0.5, pool_depth: int = 2, pool_heads: int = 4) -> None:
        super().__init__()
        if grid < 2:
            raise ConfigError(f"grid must be >= 2, got {grid}")
        self.grid, self.mask_ratio = int(grid), float(mask_ratio)
        length = self.grid ** 2
        if length - num_kept(length, self.mask_ratio) < 2:
            raise ConfigError(f"mask_ratio {mask_ratio} masks fewer than 2 of {length} patches; "
                              f"Selfie needs at least 2 candidates")
        self._set_encoder(encoder, feature_dim)
        dim = self.feature_dim
        if dim % pool_heads:
            raise ConfigError(f"pool_heads {pool_heads} does not divide the feature size {dim}")
        self.pos_embed = nn.Parameter(torch.randn(1, length, dim) * 0.02)
        self.query_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pool_blocks = nn.ModuleList(Block(dim, pool_heads) for _ in range(pool_depth))
        self.pool_norm = nn.LayerNorm(dim, eps=1e-6)

    def encode_patches(self, images: Tensor) -> Tensor:
        """Each patch through the backbone on its own: (N, C, H, W) -> (N, L, D)."""
        patches = cut_patches(images, self.grid)
        n, length = patches.shape[:2]
        return self.encoder(patches.flatten(0, 1)).view(n, length, -1)

    def summarise(self, h: Tensor, ids_keep: Tensor) -> Tensor:
        """u: the query token's output after attending over the visible patch vectors."""
        d = h.shape[-1]
        pos = self.pos_embed.to(h.dtype).expand(h.shape[0], -1, -1)
        visible = (h + pos).gather(1, ids_keep.unsqueeze(-1).expand(-1, -1, d))
        x = torch.cat([self.query_token.to(h.dtype).expand(h.shape[0], -1, -1), visible], 1)
        for blk in self.pool_blocks:
            x = blk(x)
        return self.pool_norm(x[:, 0])

    def _mask(self, batch: Mapping[str, Any], n: int, device: torch.device) -> Tensor:
        return batch_or_random_mask(batch, n, self.grid ** 2, self.mask_ratio, device, "")

    def queries_and_candidates(self, images: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """(v, h): (N, M, D) queries and candidate patch vectors of the masked positions."""
        h = self.encode_patches(images)
        ids_m = masked_ids(mask)
        ids_keep = masked_ids(~mask)
        u = self.summarise(h, ids_keep)
        d = h.shape[-1]
        pos_m = self.pos_embed.to(h.dtype).expand(h.shape[0], -1, -1).gather(
            1, ids_m.unsqueeze(-1).expand(-1, -1, d))
        cand = h.gather(1, ids_m.unsqueeze(-1).expand(-1, -1, d))
        return u.unsqueeze(1) + pos_m, cand

    def forward(self, batch: Mapping[str, Any]) -> tuple[Tensor, dict[str, Any]]:
        images = require(batch, "images", type(self).__name__)
        mask = self._mask(batch, images.shape[0], images.device)
        v, h = self.queries_and_candidates(images, mask)
        loss, acc = selfie_loss(v, h)
        return loss, {"loss": loss.detach(), "select_acc": acc,
                      "mask_ratio": mask.float().mean()}

    def transform_arguments(self) -> dict[str, Any]:
        """The transform draws masks on this objective's grid with its ratio."""
        return {"grid": self.grid, "mask_ratio": self.mask_ratio}

    def save_picture(self, images: Tensor, path: Any) -> Any:
        """Input | mask | each masked slot filled with the patch Selfie selects for it (a
        correct selection puts the slot's own patch back)."""
        from fmlab.pretrain._picture import denormalize, patch_mask_image, save_panels

        mask = random_patch_mask(images.shape[0], self.grid ** 2, self.mask_ratio, None).mask
        v, h = self.queries_and_candidates(images, mask)
        choice = (v.float() @ h.float().transpose(1, 2)).argmax(-1)  # (N, M) candidate index
        ids_m = masked_ids(mask)
        patches = cut_patches(images, self.grid)
        filled = patches.clone()
        rows = torch.arange(images.shape[0]).unsqueeze(1)
        filled[rows, ids_m] = patches[rows, ids_m.gather(1, choice)]
        n, c, hh, ww = images.shape
        g, p = self.grid, hh // self.grid
        glued = filled.view(n, g, g, c, p, p).permute(0, 3, 1, 4, 2, 5).reshape(n, c, hh, ww)
        spec = self.preprocess
        mean, std = getattr(spec, "mean", None), getattr(spec, "std", None)
        m = patch_mask_image(mask, g, hh)
        inp = denormalize(images, mean, std)
        return save_panels(path, [inp, inp * (1 - m) + 0.5 * m, denormalize(glued, mean, std)],
                           ["input", "mask", "selected"])

    @classmethod
    def default_transform(cls, image_size: int = 32, grid: int = 4, mask_ratio: float = 0.5,
                          scale: tuple[float, float] = (0.2, 1.0),
                          mean: Sequence[float] | None = None,
                          std: Sequence[float] | None = None, channels: int | None = None):
        """RRC + flip + normalise -> ``images``, plus ``ids_keep``/``mask`` on the patch grid."""
        from fmlab.data.augment import masked_transform

        if image_size % grid:
            raise ConfigError(f"image_size {image_size} is not divisible by grid {grid}")
        return masked_transform(lambda length: mae_mask_fn(length, mask_ratio), image_size,
                                image_size // grid, scale, mean, std, channels)
