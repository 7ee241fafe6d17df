"""Sample grids: the first thing to look at when a GAN trains (PNG, written atomically).

A grid is held in memory whole (PNG is written in one piece), so its size is checked against a
memory budget before anything is allocated (:func:`check_grid_size`; reliability probe F9:
``gan sample --n 100000000`` asked for 51 GB in one tensor), and G runs in batches.
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch
from PIL import Image

from fmlab.errors import ConfigError
from fmlab.gan.nets.base import Generator
from fmlab.utils.io import atomic_write

SAMPLE_BUDGET_ENV = "FMLAB_MAX_SAMPLE_BYTES"
DEFAULT_SAMPLE_BUDGET = 4 * 2**30  # bytes of generated images held in memory at once


def sample_budget() -> int:
    """The most bytes of generated images fmlab holds at once: ``$FMLAB_MAX_SAMPLE_BYTES``, else 4 GiB.

    Returns:
        The budget in bytes.
    """
    raw = os.environ.get(SAMPLE_BUDGET_ENV)
    if raw is None:
        return DEFAULT_SAMPLE_BUDGET
    try:
        value = int(float(raw))
    except ValueError:
        raise ConfigError(f"${SAMPLE_BUDGET_ENV}: {raw!r} is not a number of bytes") from None
    if value < 1:
        raise ConfigError(f"${SAMPLE_BUDGET_ENV}: {raw!r} must be >= 1")
    return value


def check_sample_bytes(key: str, n: int, img_shape: tuple[int, ...], nbytes: int,
                       where: str = "") -> None:
    """Refuse ``n`` samples whose ``nbytes`` exceed :func:`sample_budget`, naming the size.

    Args:
        key: the flag or config key that set ``n`` (``--n``).
        n: the number of samples asked for.
        img_shape: (C, H, W) of one sample.
        nbytes: the memory the request needs.
        where: what holds the samples, for the message (e.g. " in a 30x30-pixel grid").

    Examples:
        >>> check_sample_bytes("--n", 10, (1, 28, 28), 7840)
        >>> check_sample_bytes("--n", 10**8, (1, 28, 28), 78_400_000_000)
        Traceback (most recent call last):
        ...
        fmlab.errors.ConfigError: --n 100000000: 100000000 images of 1x28x28 need 73.0 GiB; the limit is 4.0 GiB (set $FMLAB_MAX_SAMPLE_BYTES to change it)
    """
    limit = sample_budget()
    if nbytes > limit:
        shape = "x".join(str(int(s)) for s in img_shape)
        raise ConfigError(f"{key} {n}: {n} images of {shape}{where} need {nbytes / 2**30:.1f} GiB; the "
                          f"limit is {limit / 2**30:.1f} GiB (set ${SAMPLE_BUDGET_ENV} to change it)")


def grid_shape(n: int, img_shape: tuple[int, int, int], nrow: int, pad: int = 2
               ) -> tuple[int, int, int]:
    """(height, width, channels) of the :func:`tile` grid of ``n`` images of ``img_shape``."""
    c, h, w = img_shape
    rows = math.ceil(n / nrow)
    return rows * (h + pad) + pad, nrow * (w + pad) + pad, c


def check_grid_size(n: int, img_shape: tuple[int, int, int], nrow: int | None = None,
                    key: str = "n", z_dim: int = 0) -> None:
    """Refuse a grid of ``n`` samples that would not fit the memory budget, before allocating.

    Args:
        n: samples in the grid.
        img_shape: (C, H, W) of one sample.
        nrow: images per row (default: about √n); a row wider than ``n`` images is counted
            as :func:`tile` allocates it.
        key: the flag or key that set ``n``, for the message.
        z_dim: latent size (the latents are drawn at once and counted too).

    Examples:
        >>> check_grid_size(64, (3, 32, 32), key="--n")
    """
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    gh, gw, c = grid_shape(n, img_shape, nrow)
    check_sample_bytes(key, n, img_shape, gh * gw * c + 4 * n * z_dim,
                       where=f" in a {gh}x{gw}-pixel grid")


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(B, C, H, W) in [-1, 1] → (B, H, W, C) uint8, rounding (x+1)·127.5."""
    x = ((images.detach().float().clamp(-1, 1) + 1.0) * 127.5).round()
    return x.to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def tile(images: np.ndarray, nrow: int, pad: int = 2, fill: int = 0) -> np.ndarray:
    """Tile (B, H, W, C) uint8 images into one (rows·(H+pad)+pad, nrow·(W+pad)+pad, C) image."""
    b, h, w, c = images.shape
    rows = math.ceil(b / nrow)
    out = np.full((rows * (h + pad) + pad, nrow * (w + pad) + pad, c), fill, dtype=np.uint8)
    for i in range(b):
        r, k = divmod(i, nrow)
        y0, x0 = pad + r * (h + pad), pad + k * (w + pad)
        out[y0:y0 + h, x0:x0 + w] = images[i]
    return out


@torch.no_grad()
def sample_grid(G: Generator, n: int, path: str | os.PathLike,
                labels: torch.Tensor | None = None, seed: int = 0,
                nrow: int | None = None, batch_size: int = 500) -> np.ndarray:
    """Draw ``n`` samples from G in eval mode (z from ``seed``), write a PNG grid, return it.

    A conditional G without ``labels`` gets classes 0, 1, …, K−1 repeated, one class per column
    when ``nrow`` is K, so the grid reads by class. All z are drawn at once (the same z for any
    ``batch_size``); G runs on ``batch_size`` of them at a time.

    Args:
        G: the generator.
        n: number of samples (>= 1; the grid must fit :func:`sample_budget`).
        path: the PNG file to write (atomically).
        labels: (n,) class labels for a conditional G.
        seed: seed of the CPU ``torch.Generator`` that draws z.
        nrow: images per row (default: K for a conditional G, else about √n).
        batch_size: samples per generator pass.

    Returns:
        The grid as a (H, W, C) uint8 array.
    """
    if n <= 0:
        raise ConfigError(f"sample_grid: n must be > 0, got {n}")
    if nrow is not None and nrow < 1:
        raise ConfigError(f"sample_grid: nrow must be >= 1, got {nrow}")
    if batch_size < 1:
        raise ConfigError(f"sample_grid: batch_size must be >= 1, got {batch_size}")
    check_grid_size(n, G.img_shape, nrow or (G.num_classes if labels is None else None),
                    z_dim=G.z_dim)
    gen = torch.Generator().manual_seed(int(seed))
    if labels is None and G.num_classes > 0:
        labels = torch.arange(n) % G.num_classes
        nrow = nrow or G.num_classes
    if labels is not None:
        labels = torch.as_tensor(labels).long()
        if labels.shape != (n,):
            raise ConfigError(f"sample_grid: labels must have shape ({n},), got "
                              f"{tuple(labels.shape)}")
        labels = labels.to(G._device())
    was_training = G.training
    G.eval()
    try:
        z = G.sample_z(n, gen)
        images = np.concatenate([
            to_uint8(G(z[i:i + batch_size], None if labels is None else labels[i:i + batch_size]))
            for i in range(0, n, batch_size)])
    finally:
        G.train(was_training)
    grid = tile(images, nrow or math.ceil(math.sqrt(n)))
    pil = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
    with atomic_write(path, "wb") as f:
        pil.save(f, format="PNG")
    return grid
