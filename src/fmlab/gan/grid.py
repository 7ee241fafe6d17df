"""Sample grids: the first thing to look at when a GAN trains (PNG, written atomically)."""

from __future__ import annotations

import math
import os

import numpy as np
import torch
from PIL import Image

from fmlab.errors import ConfigError
from fmlab.gan.nets.base import Generator
from fmlab.utils.io import atomic_write


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
                nrow: int | None = None) -> np.ndarray:
    """Draw ``n`` samples from G in eval mode (z from ``seed``), write a PNG grid, return it.

    A conditional G without ``labels`` gets classes 0, 1, …, K−1 repeated, one class per column
    when ``nrow`` is K, so the grid reads by class.
    """
    if n <= 0:
        raise ConfigError(f"sample_grid: n must be > 0, got {n}")
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
        images = G(G.sample_z(n, gen), labels)
    finally:
        G.train(was_training)
    grid = tile(to_uint8(images), nrow or math.ceil(math.sqrt(n)))
    pil = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
    with atomic_write(path, "wb") as f:
        pil.save(f, format="PNG")
    return grid
