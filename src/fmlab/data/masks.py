"""Token mask generators for masked-image objectives (MAE) and position prediction (MP3).

Both draw a random subset of ``keep = floor(L * (1 - ratio))`` tokens per sample by sorting
uniform noise (MAE's trick: an argsort of i.i.d. noise is a uniform random permutation), so a
whole batch is one ``argsort``. Randomness comes from the ``torch.Generator`` argument, or from
torch's global RNG when it is ``None`` (the engine re-seeds that one every step).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from fmlab.errors import ConfigError

__all__ = [
    "PatchMask",
    "context_subset",
    "mae_mask_fn",
    "mp3_context_fn",
    "num_kept",
    "random_patch_mask",
]


def num_kept(num_tokens: int, mask_ratio: float) -> int:
    """``floor(L * (1 - ratio))``, the number of visible (MAE) or context (MP3) tokens.

    A tiny epsilon guards against ``L * (1 - r)`` landing just below an integer in floating point.
    """
    if not 0.0 <= mask_ratio < 1.0:
        raise ConfigError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
    if num_tokens < 1:
        raise ConfigError(f"number of tokens must be >= 1, got {num_tokens}")
    keep = math.floor(num_tokens * (1.0 - mask_ratio) + 1e-9)
    if keep < 1:
        raise ConfigError(f"mask_ratio {mask_ratio} keeps no token out of {num_tokens}")
    return keep


@dataclass(frozen=True)
class PatchMask:
    """A per-sample split of ``L`` tokens into kept and masked ones.

    ids_keep: (B, K) long, sorted ascending; ids_masked: (B, L - K) long, sorted ascending;
    mask: (B, L) bool, True where the token is masked (hidden from the encoder).
    """

    ids_keep: Tensor
    ids_masked: Tensor
    mask: Tensor


def random_patch_mask(batch_size: int, num_tokens: int, mask_ratio: float,
                      generator: torch.Generator | None,
                      device: torch.device | str | None = None) -> PatchMask:
    """Keep exactly ``floor(L * (1 - ratio))`` random tokens in each sample.

    The noise is drawn on the generator's device (CPU for the global RNG) and the result moved to
    ``device``, so a seed gives the same masks wherever the batch lives.
    """
    keep = num_kept(num_tokens, mask_ratio)
    src = generator.device if generator is not None else torch.device("cpu")
    noise = torch.rand(batch_size, num_tokens, generator=generator, device=src)
    perm = noise.argsort(dim=1)
    ids_keep = perm[:, :keep].sort(dim=1).values
    ids_masked = perm[:, keep:].sort(dim=1).values
    mask = torch.ones(batch_size, num_tokens, dtype=torch.bool, device=src)
    mask.scatter_(1, ids_keep, False)
    if device is not None:
        ids_keep, ids_masked, mask = (t.to(device) for t in (ids_keep, ids_masked, mask))
    return PatchMask(ids_keep=ids_keep, ids_masked=ids_masked, mask=mask)


def context_subset(batch_size: int, num_tokens: int, mask_ratio: float,
                   generator: torch.Generator | None,
                   device: torch.device | str | None = None) -> Tensor:
    """MP3's context: (B, K) sorted token indices that serve as keys/values, K = floor(L(1-r))."""
    return random_patch_mask(batch_size, num_tokens, mask_ratio, generator, device).ids_keep


def mae_mask_fn(num_tokens: int, mask_ratio: float):
    """A ``BatchTransform`` mask hook adding ``ids_keep`` and ``mask`` for MAE."""

    def fn(batch_size: int, generator: torch.Generator, device: torch.device) -> dict[str, Tensor]:
        m = random_patch_mask(batch_size, num_tokens, mask_ratio, generator, device)
        return {"ids_keep": m.ids_keep, "mask": m.mask}

    return fn


def mp3_context_fn(num_tokens: int, mask_ratio: float):
    """A ``BatchTransform`` mask hook adding ``context_ids`` for MP3."""

    def fn(batch_size: int, generator: torch.Generator, device: torch.device) -> dict[str, Tensor]:
        return {"context_ids": context_subset(batch_size, num_tokens, mask_ratio, generator,
                                              device)}

    return fn
