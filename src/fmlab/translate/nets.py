"""Small CycleGAN nets for 28–64 px images: a ResNet generator and a PatchGAN discriminator.

Generator (Johnson et al. / CycleGAN, scaled down): c7s1-k, ``n_down`` stride-2 convs, ``n_blocks``
residual blocks, ``n_down`` transposed convs, c7s1-C + tanh; instance norm throughout. It is fully
convolutional, so an image whose side is not a multiple of 2^n_down is reflect-padded and the
output cropped back (MNIST's 28 px works at n_down=2 and 3). Discriminator: PatchGAN — 4×4
convs, the first ``n_layers`` with stride 2, then one stride-1 conv and a 1-channel logit map, each
logit judging one receptive-field patch (LeakyReLU 0.2, instance norm except on the first).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fmlab.utils.validation import check


class ResBlock(nn.Module):
    """x + conv-norm-relu-conv-norm(x), reflection padded (no border artefacts)."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3), nn.InstanceNorm2d(ch), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3), nn.InstanceNorm2d(ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """Image → image in [-1, 1] (see the module docstring for the layout).

    Args:
        in_channels: channels of the source images (1 or 3).
        out_channels: channels of the output (default: ``in_channels``).
        ngf: width of the first layer (doubled at each downsampling).
        n_blocks: residual blocks at the bottleneck.
        n_down: stride-2 downsamplings (and as many upsamplings).

    Examples:
        >>> g = ResnetGenerator(1, ngf=4, n_blocks=1)
        >>> g(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 1, 28, 28])
    """

    def __init__(self, in_channels: int = 1, out_channels: int | None = None, ngf: int = 32,
                 n_blocks: int = 3, n_down: int = 2) -> None:
        super().__init__()
        check(in_channels in (1, 3), "model.channels", in_channels, "must be 1 or 3")
        check(ngf >= 1 and n_blocks >= 0 and n_down >= 0, "model", (ngf, n_blocks, n_down),
              "ngf >= 1, n_blocks >= 0 and n_down >= 0")
        out_channels = out_channels or in_channels
        self.in_channels, self.out_channels, self.n_down = in_channels, out_channels, n_down
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(in_channels, ngf, 7),
                                   nn.InstanceNorm2d(ngf), nn.ReLU(True)]
        ch = ngf
        for _ in range(n_down):
            layers += [nn.Conv2d(ch, ch * 2, 3, 2, 1), nn.InstanceNorm2d(ch * 2), nn.ReLU(True)]
            ch *= 2
        layers += [ResBlock(ch) for _ in range(n_blocks)]
        for _ in range(n_down):
            layers += [nn.ConvTranspose2d(ch, ch // 2, 3, 2, 1, output_padding=1),
                       nn.InstanceNorm2d(ch // 2), nn.ReLU(True)]
            ch //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ch, out_channels, 7), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        m = 2 ** self.n_down
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="reflect")
        return self.net(x)[..., :h, :w]


class PatchDiscriminator(nn.Module):
    """PatchGAN: (N, C, H, W) → (N, 1, h, w) logits, one per receptive-field patch.

    Examples:
        >>> d = PatchDiscriminator(1, ndf=4)
        >>> d(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 1, 5, 5])
    """

    def __init__(self, in_channels: int = 1, ndf: int = 32, n_layers: int = 2) -> None:
        super().__init__()
        check(n_layers >= 1, "model.d_layers", n_layers, "must be >= 1")
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        ch = ndf
        for _ in range(n_layers - 1):
            layers += [nn.Conv2d(ch, ch * 2, 4, 2, 1), nn.InstanceNorm2d(ch * 2),
                       nn.LeakyReLU(0.2, True)]
            ch *= 2
        layers += [nn.Conv2d(ch, ch * 2, 4, 1, 1), nn.InstanceNorm2d(ch * 2), nn.LeakyReLU(0.2, True),
                   nn.Conv2d(ch * 2, 1, 4, 1, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
