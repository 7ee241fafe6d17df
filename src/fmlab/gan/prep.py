"""From fmlab.data's uint8 batches to what GAN nets take: float (N, C, H, W) in [-1, 1].

GANs use the (x/127.5 − 1) convention (tanh outputs), not a backbone's mean/std, so this small
converter lives with the GAN pieces rather than in a backbone's PreprocessSpec.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from fmlab.errors import DataError


def to_gan_input(images: np.ndarray | torch.Tensor, channels: int | None = None,
                 size: int | None = None) -> torch.Tensor:
    """uint8 NHW / NHWC (C = 1 or 3) → float32 (N, C, H, W) in [-1, 1].

    ``channels`` converts grey ↔ RGB (grey→RGB repeats; RGB→grey uses ITU-R 601 luma);
    ``size`` resizes bilinearly (antialiased) to size×size, e.g. MNIST 28 → 32 for DCGAN.
    """
    x = torch.as_tensor(np.asarray(images)) if isinstance(images, np.ndarray) else images
    if x.dtype != torch.uint8:
        raise DataError(f"GAN input images must be uint8, got {x.dtype}")
    if x.dim() == 3:
        x = x[..., None]
    if x.dim() != 4 or x.shape[-1] not in (1, 3):
        raise DataError(f"GAN input images must be NHW or NHWC with C in (1, 3), got shape "
                        f"{tuple(x.shape)}")
    x = x.permute(0, 3, 1, 2).float() / 127.5 - 1.0
    if channels is not None and channels != x.shape[1]:
        if channels == 3:
            x = x.expand(-1, 3, -1, -1)
        elif channels == 1:
            w = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
            x = (x * w).sum(1, keepdim=True)
        else:
            raise DataError(f"channels must be 1 or 3, got {channels}")
    if size is not None and tuple(x.shape[-2:]) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                          antialias=True).clamp(-1.0, 1.0)
    return x.contiguous()
