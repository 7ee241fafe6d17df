"""Random augmented views for feature extraction (GDA/Tip-Adapter ``n_views``).

One batched op on preprocessed float images: random resized crop (scale 0.5–1, as the GDA code
uses for its 10 views) + horizontal flip, per sample, seeded by a ``torch.Generator``.
"""

from __future__ import annotations

import math

import torch
from torchvision.ops import roi_align


def random_resized_crop_flip(
    x: torch.Tensor, generator: torch.Generator, scale: tuple[float, float] = (0.5, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3), flip_p: float = 0.5,
) -> torch.Tensor:
    n, _, h, w = x.shape
    area = torch.empty(n).uniform_(scale[0], scale[1], generator=generator) * h * w
    log_r = torch.empty(n).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=generator)
    r = torch.exp(log_r)
    cw = torch.sqrt(area * r).clamp(1, w)
    ch = torch.sqrt(area / r).clamp(1, h)
    x0 = torch.rand(n, generator=generator) * (w - cw)
    y0 = torch.rand(n, generator=generator) * (h - ch)
    boxes = torch.stack([torch.arange(n, dtype=torch.float32), x0, y0, x0 + cw, y0 + ch], 1)
    out = roi_align(x, boxes.to(x.dtype), output_size=(h, w), spatial_scale=1.0, sampling_ratio=2,
                    aligned=True)
    flip = torch.rand(n, generator=generator) < flip_p
    out[flip] = out[flip].flip(-1)
    return out
