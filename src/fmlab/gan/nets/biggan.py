"""BigGAN-lite for 32×32 (Brock et al. 2019, CIFAR layout, small widths).

G: hierarchical z — z is split into 4 equal chunks; the first feeds the Linear to (4ch, 4, 4), each
of the 3 up-blocks gets c = [chunk, shared class embedding] (just the chunk when unconditional)
through :class:`~fmlab.gan.conditioning.LinearConditionalBatchNorm2d`. Spectral norm in G and D,
orthogonal init, optional SAGAN self-attention at one resolution (``attn_res``, None = off).
D: like SNGAN's but 4ch wide, with the same optional attention; projection head by default.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fmlab.errors import ConfigError
from fmlab.gan.conditioning import LinearConditionalBatchNorm2d
from fmlab.gan.nets.base import (
    Discriminator,
    Generator,
    check_sizes,
    register_discriminator,
    register_generator,
)
from fmlab.gan.nets.layers import DBlock, GBlock, SelfAttention, conv, linear

_N_UP = 3


def _check(img_size: int, attn_res: int | None, allowed: tuple[int, ...], who: str) -> None:
    if img_size != 32:
        raise ConfigError(f"{who} is the 32×32 architecture; got img_size={img_size}")
    if attn_res is not None and attn_res not in allowed:
        raise ConfigError(f"{who}: attn_res must be None or one of {allowed}, got {attn_res}")


@register_generator("biggan")
class BigGANGenerator(Generator):
    def __init__(self, z_dim: int = 128, ch: int = 64, channels: int = 3, img_size: int = 32,
                 num_classes: int = 0, shared_dim: int = 128, attn_res: int | None = None,
                 sn: bool = True) -> None:
        z_dim, ch, channels, shared_dim = check_sizes("BigGANGenerator", z_dim=z_dim, ch=ch,
                                                      channels=channels, shared_dim=shared_dim)
        _check(img_size, attn_res, (8, 16, 32), "BigGANGenerator")
        if z_dim % (_N_UP + 1):
            raise ConfigError(f"BigGANGenerator: z_dim must split into {_N_UP + 1} equal chunks "
                              f"(hierarchical z), got z_dim={z_dim}")
        super().__init__(z_dim, num_classes, (channels, img_size, img_size))
        self.chunk = z_dim // (_N_UP + 1)
        self.width = 4 * ch
        self.attn_res = attn_res
        cond_dim = self.chunk + (shared_dim if num_classes > 0 else 0)
        if num_classes > 0:
            self.shared = nn.Embedding(num_classes, shared_dim)
        self.fc = linear(self.chunk, self.width * 16, sn=sn, init="ortho")
        self.blocks = nn.ModuleList(
            GBlock(self.width, self.width,
                   lambda n: LinearConditionalBatchNorm2d(n, cond_dim, sn=sn), sn=sn, init="ortho")
            for _ in range(_N_UP)
        )
        self.attn = SelfAttention(self.width, sn=sn) if attn_res else None
        self.bn = nn.BatchNorm2d(self.width)
        self.out = conv(self.width, channels, 3, sn=sn, init="ortho")

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        y = self._check(z, y)
        chunks = torch.split(z, self.chunk, dim=1)
        h = self.fc(chunks[0]).view(z.shape[0], self.width, 4, 4)
        emb = self.shared(y) if y is not None else None
        for i, block in enumerate(self.blocks):
            c = chunks[i + 1] if emb is None else torch.cat([chunks[i + 1], emb], dim=1)
            h = block(h, c)
            if self.attn is not None and h.shape[-1] == self.attn_res:
                h = self.attn(h)
        return torch.tanh(self.out(F.relu(self.bn(h))))


@register_discriminator("biggan")
class BigGANDiscriminator(Discriminator):
    def __init__(self, ch: int = 64, channels: int = 3, img_size: int = 32, num_classes: int = 0,
                 cond: str | None = None, attn_res: int | None = None, sn: bool = True) -> None:
        ch, channels = check_sizes("BigGANDiscriminator", ch=ch, channels=channels)
        _check(img_size, attn_res, (8, 16), "BigGANDiscriminator")
        width = 4 * ch
        super().__init__(width, num_classes, cond, sn=sn)
        self.img_shape = (channels, img_size, img_size)
        self.attn_res = attn_res
        self.blocks = nn.ModuleList([
            DBlock(channels, width, down=True, first=True, sn=sn, init="ortho"),
            DBlock(width, width, down=True, sn=sn, init="ortho"),
            DBlock(width, width, down=False, sn=sn, init="ortho"),
            DBlock(width, width, down=False, sn=sn, init="ortho"),
        ])
        self.attn = SelfAttention(width, sn=sn) if attn_res else None

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        self._check_x(x, self.img_shape)
        h = x
        attended = self.attn is None
        for block in self.blocks:
            h = block(h)
            if not attended and h.shape[-1] == self.attn_res:
                h = self.attn(h)
                attended = True
        return F.relu(h).sum(dim=(2, 3))
