"""DCGAN for small images (StudioGAN's 32×32 layout, width configurable).

G: z → Linear → (8ch, s, s) with s = H/8 → three 4×4 stride-2 transposed convs (BN-ReLU, class-
conditional BN when ``num_classes > 0``) → 3×3 conv → tanh.
D: conv3×3 / conv4×4-stride-2 pairs with LeakyReLU(0.1), spectral norm by default, down to s×s;
φ = the flattened last map (AdaptiveMix's "all D blocks down to 4×4"). No BatchNorm in D, so
gradient penalties and AdaptiveMix see per-sample functions.
"""

from __future__ import annotations

import itertools

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
from fmlab.gan.nets.layers import conv, linear


def _bottom(img_size: int, who: str) -> int:
    if img_size % 8 or img_size < 8:
        raise ConfigError(f"{who}: img_size must be a multiple of 8, got {img_size}")
    return img_size // 8


@register_generator("dcgan")
class DCGANGenerator(Generator):
    def __init__(self, z_dim: int = 128, ch: int = 64, channels: int = 3, img_size: int = 32,
                 num_classes: int = 0) -> None:
        z_dim, ch, channels, img_size = check_sizes("DCGANGenerator", z_dim=z_dim, ch=ch,
                                                    channels=channels, img_size=img_size)
        super().__init__(z_dim, num_classes, (channels, img_size, img_size))
        self.s = _bottom(img_size, "DCGANGenerator")
        self.ch = ch
        self.fc = linear(z_dim, 8 * ch * self.s * self.s, init="normal")
        self.bn0 = ConditionalBatchNorm2d(8 * ch, num_classes)
        widths = [8 * ch, 4 * ch, 2 * ch, ch]
        self.ups = nn.ModuleList()
        self.bns = nn.ModuleList()
        for cin, cout in itertools.pairwise(widths):
            up = nn.ConvTranspose2d(cin, cout, 4, 2, 1)
            nn.init.normal_(up.weight, 0.0, 0.02)
            nn.init.zeros_(up.bias)
            self.ups.append(up)
            self.bns.append(ConditionalBatchNorm2d(cout, num_classes))
        self.out = conv(ch, channels, 3, init="normal")

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        y = self._check(z, y)
        h = self.fc(z).view(z.shape[0], 8 * self.ch, self.s, self.s)
        h = F.relu(self.bn0(h, y))
        for up, bn in zip(self.ups, self.bns):
            h = F.relu(bn(up(h), y))
        return torch.tanh(self.out(h))


@register_discriminator("dcgan")
class DCGANDiscriminator(Discriminator):
    def __init__(self, ch: int = 64, channels: int = 3, img_size: int = 32, num_classes: int = 0,
                 cond: str | None = None, sn: bool = True) -> None:
        ch, channels, img_size = check_sizes("DCGANDiscriminator", ch=ch, channels=channels,
                                             img_size=img_size)
        s = _bottom(img_size, "DCGANDiscriminator")
        super().__init__(8 * ch * s * s, num_classes, cond, sn=sn)
        self.img_shape = (channels, img_size, img_size)
        widths = [ch, 2 * ch, 4 * ch]
        layers: list[nn.Module] = []
        cin = channels
        for w in widths:
            layers += [conv(cin, w, 3, sn=sn), nn.LeakyReLU(0.1),
                       conv(w, w, 4, 2, 1, sn=sn), nn.LeakyReLU(0.1)]
            cin = w
        layers += [conv(cin, 8 * ch, 3, sn=sn), nn.LeakyReLU(0.1)]
        self.blocks = nn.Sequential(*layers)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        self._check_x(x, self.img_shape)
        return self.blocks(x).flatten(1)
