"""A small VQ-VAE: images ↔ a grid of discrete codes (the image tokens of a DALL-E-style model).

x (B, C, H, W) in [-1, 1] → conv encoder (two stride-2 convolutions: H/4 × W/4 cells) → z_e →
nearest codebook vector e_k per cell → conv decoder → x̂. Loss (van den Oord et al.):
‖x − x̂‖² + ‖sg(z_e) − e‖² + β‖z_e − sg(e)‖², gradients passed through the quantiser
straight-through (x̂ is computed from z_e + sg(e − z_e)).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fmlab.errors import DataError
from fmlab.gan.nets.base import check_sizes

__all__ = ["VQVAE", "VQVAEObjective"]


class VQVAE(nn.Module):
    """Encoder, codebook (``codes`` × ``dim``) and decoder for ``channels``-channel images.

    Examples:
        >>> vq = VQVAE(channels=3, codes=16, dim=8, ch=8)
        >>> idx = vq.encode(torch.zeros(2, 3, 28, 28))
        >>> idx.shape, vq.decode(idx).shape
        (torch.Size([2, 7, 7]), torch.Size([2, 3, 28, 28]))
    """

    def __init__(self, channels: int = 3, codes: int = 64, dim: int = 32, ch: int = 32,
                 beta: float = 0.25) -> None:
        super().__init__()
        channels, codes, dim, ch = check_sizes("VQVAE", channels=channels, codes=codes, dim=dim, ch=ch)
        self.channels, self.codes, self.dim, self.beta = channels, codes, dim, float(beta)
        self.encoder = nn.Sequential(
            nn.Conv2d(channels, ch, 4, 2, 1), nn.ReLU(), nn.Conv2d(ch, 2 * ch, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(2 * ch, 2 * ch, 3, 1, 1), nn.ReLU(), nn.Conv2d(2 * ch, dim, 1))
        self.codebook = nn.Embedding(codes, dim)
        nn.init.uniform_(self.codebook.weight, -1.0 / codes, 1.0 / codes)
        self.decoder = nn.Sequential(
            nn.Conv2d(dim, 2 * ch, 3, 1, 1), nn.ReLU(), nn.ConvTranspose2d(2 * ch, ch, 4, 2, 1),
            nn.ReLU(), nn.ConvTranspose2d(ch, channels, 4, 2, 1), nn.Tanh())

    def _check(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != self.channels or x.shape[2] % 4 or x.shape[3] % 4:
            raise DataError(f"VQVAE: images must be (B, {self.channels}, H, W) with H, W multiples "
                            f"of 4, got {tuple(x.shape)}")

    def quantize(self, z: torch.Tensor) -> torch.Tensor:
        """Index (B, h, w) of the nearest codebook vector of every cell of z (B, dim, h, w)."""
        flat = z.permute(0, 2, 3, 1).reshape(-1, self.dim)
        d = (flat.pow(2).sum(1, keepdim=True) - 2 * flat @ self.codebook.weight.T
             + self.codebook.weight.pow(2).sum(1)[None])
        return d.argmin(1).view(z.shape[0], z.shape[2], z.shape[3])

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images → code indices (B, H/4, W/4)."""
        self._check(x)
        return self.quantize(self.encoder(x))

    def decode(self, idx: torch.Tensor) -> torch.Tensor:
        """Code indices (B, h, w) → images (B, C, 4h, 4w) in [-1, 1]."""
        if idx.dim() != 3 or int(idx.min()) < 0 or int(idx.max()) >= self.codes:
            raise DataError(f"VQVAE: codes must be (B, h, w) in [0, {self.codes}), got "
                            f"{tuple(idx.shape)}")
        return self.decoder(self.codebook(idx).permute(0, 3, 1, 2))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x̂, VQ loss = codebook + β·commitment, indices)."""
        self._check(x)
        z = self.encoder(x)
        idx = self.quantize(z)
        e = self.codebook(idx).permute(0, 3, 1, 2)
        vq = F.mse_loss(e, z.detach()) + self.beta * F.mse_loss(z, e.detach())
        x_hat = self.decoder(z + (e - z).detach())
        return x_hat, vq, idx


class VQVAEObjective(nn.Module):
    """Engine objective: reconstruction MSE + VQ loss on ``batch["images"]`` (float in [-1, 1]),
    logging the share of the codebook in use in the batch (dead codes show up here)."""

    def __init__(self, vq: VQVAE) -> None:
        super().__init__()
        self.vq = vq

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        x = batch["images"]
        x_hat, vq_loss, idx = self.vq(x)
        rec = F.mse_loss(x_hat, x)
        used = idx.unique().numel() / self.vq.codes
        return rec + vq_loss, {"rec": float(rec.detach()), "vq": float(vq_loss.detach()),
                               "codes_used": used}
