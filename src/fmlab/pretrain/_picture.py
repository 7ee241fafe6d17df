"""The side-by-side PNG of the masked objectives: one row per image, one column per panel.

Panels are float (N, C, H, W) images in the objective's normalised space; they are mapped back to
[0, 1] with the preprocessing's mean/std, enlarged (nearest neighbour, so patch edges stay
sharp) and written atomically with a title over each column.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from fmlab.utils.io import atomic_write

__all__ = ["denormalize", "patch_mask_image", "save_panels"]


def denormalize(x: Tensor, mean: Sequence[float] | None, std: Sequence[float] | None) -> Tensor:
    """Undo ``(x - mean) / std`` and clip to [0, 1] (grey images become RGB).

    Examples:
        >>> float(denormalize(torch.zeros(1, 3, 2, 2), (0.5,) * 3, (0.2,) * 3).mean())
        0.5
    """
    x = x.detach().float().cpu()
    if mean is not None and std is not None:
        m = torch.tensor(mean).view(1, -1, 1, 1)
        s = torch.tensor(std).view(1, -1, 1, 1)
        x = x * s + m
    if x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    return x.clamp(0, 1)


def patch_mask_image(mask: Tensor, grid: int, size: int) -> Tensor:
    """(N, grid*grid) bool (True = masked) -> (N, 1, size, size) float, 1 on masked pixels.

    Examples:
        >>> patch_mask_image(torch.tensor([[True, False, False, False]]), 2, 4)[0, 0, :, 0].tolist()
        [1.0, 1.0, 0.0, 0.0]
    """
    m = mask.float().view(-1, 1, grid, grid)
    return torch.nn.functional.interpolate(m, size=(size, size), mode="nearest")


def save_panels(path: str | Path, panels: Sequence[Tensor], titles: Sequence[str],
                scale: int = 4) -> Path:
    """Write ``panels`` (each (N, 3, H, W) in [0, 1]) as an N-row PNG, one column per panel.

    Args:
        path: the PNG to write.
        panels: same-shaped image batches.
        titles: one caption per column.
        scale: enlargement factor.

    Returns:
        The path written.
    """
    from PIL import Image, ImageDraw

    n, _, h, w = panels[0].shape
    gap, head = 4, 14
    cell_w, cell_h = w * scale, h * scale
    width = len(panels) * (cell_w + gap) + gap
    height = head + n * (cell_h + gap) + gap
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for j, (panel, title) in enumerate(zip(panels, titles, strict=True)):
        x0 = gap + j * (cell_w + gap)
        draw.text((x0, 1), title[: max(4, cell_w // 6)], fill=(0, 0, 0))
        arr = (panel.clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
        for i in range(n):
            tile = Image.fromarray(arr[i]).resize((cell_w, cell_h), Image.NEAREST)
            canvas.paste(tile, (x0, head + gap + i * (cell_h + gap)))
    path = Path(path)
    with atomic_write(path) as f:
        canvas.save(f, format="PNG")
    return path
