"""A small class-conditional UNet for 1×28×28 (DDPM ε-prediction) whose layers come from a factory.

Why a factory: the same network, module names and shapes in ``dense`` form (nn.Linear/Conv2d,
what LoRA adapts) or in ``kind`` form (:mod:`fmlab.diffusion.kind`), so the KIND model, its
dense equivalent and the LoRA baseline differ only in the layers' parametrisation.

Layout (``ch`` = 32 by default): conv_in 28² → ResBlock(ch) → down → 14² ResBlock(2ch) → down →
7² mid ResBlock(2ch) → up → 14² ResBlock(4ch→2ch, skip) → up → 28² ResBlock(2ch→ch, skip) →
GroupNorm·SiLU·conv_out. The time step (sinusoidal → 2-layer MLP) and the class embedding
(K + 1 rows; row K is the "null" class of classifier-free guidance) are summed and added inside
every ResBlock. Norms, biases and the class embedding stay dense in both forms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fmlab.diffusion.kind import KindConv2d, KindLinear, set_labels
from fmlab.errors import ConfigError

LAYER_KINDS = ("dense", "kind")


@dataclass
class LayerFactory:
    """Makes the UNet's linears and convs: plain (``dense``) or KIND (``kind``).

    Args:
        kind: ``dense`` or ``kind``.
        learngenes: shared components of every KIND layer.
        tailors: components per class of every KIND layer.
        num_classes: K.
    """

    kind: str = "dense"
    learngenes: int = 8
    tailors: int = 2
    num_classes: int = 10

    def __post_init__(self) -> None:
        if self.kind not in LAYER_KINDS:
            raise ConfigError(f"model.layers: {self.kind!r} must be one of {', '.join(LAYER_KINDS)}")

    def linear(self, d_in: int, d_out: int) -> nn.Module:
        if self.kind == "kind":
            return KindLinear(d_in, d_out, self.learngenes, self.tailors, self.num_classes)
        return nn.Linear(d_in, d_out)

    def conv(self, c_in: int, c_out: int, k: int = 3, stride: int = 1) -> nn.Module:
        if self.kind == "kind":
            return KindConv2d(c_in, c_out, k, stride, k // 2, self.learngenes, self.tailors,
                              self.num_classes)
        return nn.Conv2d(c_in, c_out, k, stride, k // 2)


def timestep_embedding(t: Tensor, dim: int) -> Tensor:
    """Sinusoidal embedding of integer timesteps (B,) → (B, dim) (Transformer/DDPM style).

    Examples:
        >>> timestep_embedding(torch.tensor([0, 5]), 8).shape
        torch.Size([2, 8])
    """
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


def group_norm(c: int) -> nn.GroupNorm:
    """GroupNorm over ``c`` channels with the most groups ≤ 8 that divide ``c``: 8 for multiples
    of 8 (and ``c`` itself below 8), as before, but any width works, so a from-scratch baseline
    can be sized to a parameter budget (``ch`` = 10 → 5 groups)."""
    return nn.GroupNorm(next(g for g in range(min(8, c), 0, -1) if c % g == 0), c)


class ResBlock(nn.Module):
    """GN·SiLU·conv → + emb → GN·SiLU·conv, with a 1×1 skip when the width changes."""

    def __init__(self, f: LayerFactory, c_in: int, c_out: int, emb_dim: int) -> None:
        super().__init__()
        self.norm1 = group_norm(c_in)
        self.conv1 = f.conv(c_in, c_out)
        self.emb = f.linear(emb_dim, c_out)
        self.norm2 = group_norm(c_out)
        self.conv2 = f.conv(c_out, c_out)
        self.skip = f.conv(c_in, c_out, k=1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(F.silu(emb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class UNet(nn.Module):
    """ε_θ(x_t, t, y) for 1×28×28 images (see the module docstring).

    Args:
        factory: makes the linears and convs.
        ch: base width.
        channels: image channels.

    Examples:
        >>> net = UNet(LayerFactory("kind", 2, 1, num_classes=3), ch=8)
        >>> net(torch.zeros(2, 1, 28, 28), torch.tensor([1, 9]), torch.tensor([0, 3])).shape
        torch.Size([2, 1, 28, 28])
    """

    def __init__(self, factory: LayerFactory, ch: int = 32, channels: int = 1) -> None:
        super().__init__()
        f = factory
        self.num_classes = f.num_classes
        self.ch = ch
        emb = 4 * ch
        self.temb_dim = ch
        self.time_mlp1 = f.linear(ch, emb)
        self.time_mlp2 = f.linear(emb, emb)
        self.class_emb = nn.Embedding(f.num_classes + 1, emb)
        self.conv_in = f.conv(channels, ch)
        self.down1 = ResBlock(f, ch, ch, emb)
        self.pool1 = f.conv(ch, 2 * ch, stride=2)
        self.down2 = ResBlock(f, 2 * ch, 2 * ch, emb)
        self.pool2 = f.conv(2 * ch, 2 * ch, stride=2)
        self.mid = ResBlock(f, 2 * ch, 2 * ch, emb)
        self.up2_conv = f.conv(2 * ch, 2 * ch)
        self.up2 = ResBlock(f, 4 * ch, 2 * ch, emb)
        self.up1_conv = f.conv(2 * ch, ch)
        self.up1 = ResBlock(f, 2 * ch, ch, emb)
        self.norm_out = group_norm(ch)
        self.conv_out = f.conv(ch, channels)

    def forward(self, x: Tensor, t: Tensor, y: Tensor) -> Tensor:
        """Predict ε for noisy images ``x`` (B, C, 28, 28) at steps ``t`` of classes ``y`` in [0, K]."""
        if x.shape[-2:] != (28, 28):
            raise ConfigError(f"UNet: expects 28x28 images, got {tuple(x.shape[-2:])}")
        set_labels(self, y)
        e = self.time_mlp2(F.silu(self.time_mlp1(timestep_embedding(t, self.temb_dim))))
        e = e + self.class_emb(y)
        h0 = self.conv_in(x)
        h1 = self.down1(h0, e)                       # 28
        h2 = self.down2(self.pool1(h1), e)           # 14
        h = self.mid(self.pool2(h2), e)              # 7
        h = self.up2_conv(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        h = self.up2(torch.cat([h, h2], 1), e)       # 14
        h = self.up1_conv(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        h = self.up1(torch.cat([h, h1], 1), e)       # 28
        return self.conv_out(F.silu(self.norm_out(h)))
