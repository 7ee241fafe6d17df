"""ResNet SNGAN for 32×32 (Miyato & Koyama 2018; StudioGAN's ``resnet.py`` widths).

G: z → Linear → (4ch, 4, 4) → 3 up-blocks (class-conditional BN when ``num_classes > 0``)
→ BN-ReLU-conv3-tanh. D (spectral norm on every layer): optimised first block ↓, block ↓,
block, block, ReLU, global *sum* pooling → φ (2ch); projection or classifier heads on φ.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fmlab.errors import ConfigError
from fmlab.gan.conditioning import ConditionalBatchNorm2d
from fmlab.gan.nets.base import (
    Discriminator,
    Generator,
    check_sizes,
    register_discriminator,
    register_generator,
)
from fmlab.gan.nets.layers import DBlock, GBlock, conv, linear


def _check_size(img_size: int, who: str) -> None:
    if img_size != 32:
        raise ConfigError(f"{who} is the 32×32 architecture; got img_size={img_size}")


@register_generator("sngan")
class SNGANGenerator(Generator):
    def __init__(self, z_dim: int = 128, ch: int = 64, channels: int = 3, img_size: int = 32,
                 num_classes: int = 0) -> None:
        z_dim, ch, channels = check_sizes("SNGANGenerator", z_dim=z_dim, ch=ch, channels=channels)
        _check_size(img_size, "SNGANGenerator")
        super().__init__(z_dim, num_classes, (channels, img_size, img_size))
        self.width = 4 * ch
        self.fc = linear(z_dim, self.width * 16)
        self.blocks = nn.ModuleList(
            GBlock(self.width, self.width, lambda n: ConditionalBatchNorm2d(n, num_classes))
            for _ in range(3)
        )
        self.bn = nn.BatchNorm2d(self.width)
        self.out = conv(self.width, channels, 3)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        y = self._check(z, y)
        h = self.fc(z).view(z.shape[0], self.width, 4, 4)
        for block in self.blocks:
            h = block(h, y)
        return torch.tanh(self.out(F.relu(self.bn(h))))


@register_discriminator("sngan")
class SNGANDiscriminator(Discriminator):
    def __init__(self, ch: int = 64, channels: int = 3, img_size: int = 32, num_classes: int = 0,
                 cond: str | None = None, sn: bool = True) -> None:
        ch, channels = check_sizes("SNGANDiscriminator", ch=ch, channels=channels)
        _check_size(img_size, "SNGANDiscriminator")
        width = 2 * ch
        super().__init__(width, num_classes, cond, sn=sn)
        self.img_shape = (channels, img_size, img_size)
        self.blocks = nn.Sequential(
            DBlock(channels, width, down=True, first=True, sn=sn),
            DBlock(width, width, down=True, sn=sn),
            DBlock(width, width, down=False, sn=sn),
            DBlock(width, width, down=False, sn=sn),
        )

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        self._check_x(x, self.img_shape)
        return F.relu(self.blocks(x)).sum(dim=(2, 3))
