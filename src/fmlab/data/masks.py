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

    Args:
        num_tokens: L, the number of tokens (>= 1).
        mask_ratio: the masked fraction r, in [0, 1).

    Returns:
        The number of kept tokens, at least 1.

    Raises:
        ConfigError: r outside [0, 1), L < 1, or a ratio that keeps no token.

    Examples:
        >>> num_kept(64, 0.75), num_kept(10, 0.7)
        (16, 3)
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

    Attributes:
        ids_keep: (B, K) long, sorted ascending.
        ids_masked: (B, L - K) long, sorted ascending.
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

    Args:
        batch_size: B.
        num_tokens: L.
        mask_ratio: masked fraction r, in [0, 1).
        generator: torch RNG; None uses the global one.
        device: where the result goes (default: the generator's device).

    Returns:
        A :class:`PatchMask`.

    Examples:
        >>> m = random_patch_mask(2, 8, 0.75, torch.Generator().manual_seed(0))
        >>> m.ids_keep.shape, m.ids_masked.shape, m.mask.sum(dim=1).tolist()
        (torch.Size([2, 2]), torch.Size([2, 6]), [6, 6])
        >>> bool(m.mask.gather(1, m.ids_keep).any())  # kept tokens are never masked
        False
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


def batch_or_random_mask(batch: dict, n: int, num_tokens: int, mask_ratio: float,
                         device: torch.device | None = None, where: str = "") -> Tensor:
    """``batch["mask"]`` (N, L) as booleans when the transform drew one (runs replay exactly),
    else a fresh :func:`random_patch_mask` from torch's global RNG (which the engine seeds).

    Raises:
        DataError: a batch mask of another shape (``where`` names the grid in the message).

    Examples:
        >>> batch_or_random_mask({"mask": torch.tensor([[1, 0]])}, 1, 2, 0.5).tolist()
        [[True, False]]
    """
    from fmlab.errors import DataError

    if "mask" in batch:
        mask = batch["mask"].to(device).bool()
        if tuple(mask.shape) != (n, num_tokens):
            raise DataError(f"batch['mask'] of shape {tuple(mask.shape)} does not fit {n} images "
                            f"of {num_tokens} patches{where}")
        return mask
    return random_patch_mask(n, num_tokens, mask_ratio, None, device).mask


def context_subset(batch_size: int, num_tokens: int, mask_ratio: float,
                   generator: torch.Generator | None,
                   device: torch.device | str | None = None) -> Tensor:
    """MP3's context: (B, K) sorted token indices that serve as keys/values, K = floor(L(1-r)).

    Args:
        batch_size: B.
        num_tokens: L.
        mask_ratio: r, in [0, 1).
        generator: torch RNG; None uses the global one.
        device: where the result goes.

    Returns:
        (B, K) long tensor, each row sorted and without repeats.

    Examples:
        >>> context_subset(3, 16, 0.5, torch.Generator().manual_seed(0)).shape
        torch.Size([3, 8])
    """
    return random_patch_mask(batch_size, num_tokens, mask_ratio, generator, device).ids_keep


def mae_mask_fn(num_tokens: int, mask_ratio: float):
    """A ``BatchTransform`` mask hook adding ``ids_keep`` and ``mask`` for MAE.

    Args:
        num_tokens: L, the encoder's number of patches.
        mask_ratio: masked fraction r.

    Returns:
        ``fn(batch_size, generator, device) -> {"ids_keep", "mask"}``.

    Examples:
        >>> out = mae_mask_fn(16, 0.75)(4, torch.Generator().manual_seed(0), torch.device("cpu"))
        >>> sorted(out), tuple(out["ids_keep"].shape)
        (['ids_keep', 'mask'], (4, 4))
    """

    def fn(batch_size: int, generator: torch.Generator, device: torch.device) -> dict[str, Tensor]:
        m = random_patch_mask(batch_size, num_tokens, mask_ratio, generator, device)
        return {"ids_keep": m.ids_keep, "mask": m.mask}

    return fn


def mp3_context_fn(num_tokens: int, mask_ratio: float):
    """A ``BatchTransform`` mask hook adding ``context_ids`` for MP3.

    Args:
        num_tokens: L, the encoder's number of patches.
        mask_ratio: r; K = floor(L(1 - r)) tokens form the context.

    Returns:
        ``fn(batch_size, generator, device) -> {"context_ids"}``.

    Examples:
        >>> out = mp3_context_fn(16, 0.25)(2, torch.Generator().manual_seed(0), torch.device("cpu"))
        >>> tuple(out["context_ids"].shape)
        (2, 12)
    """

    def fn(batch_size: int, generator: torch.Generator, device: torch.device) -> dict[str, Tensor]:
        return {"context_ids": context_subset(batch_size, num_tokens, mask_ratio, generator,
                                              device)}

    return fn
