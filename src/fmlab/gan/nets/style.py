"""A small style-based generator (StyleGAN-1 layout) and its GenDA-adapted form.

Why a second generator family: truncation and GenDA's attribute adaptor act on the
intermediate latent w of a *mapping network*, which the DCGAN/SNGAN/BigGAN generators lack.

``style`` — z → PixelNorm → ``mapping_layers`` × (Linear, LeakyReLU 0.2) = w; synthesis starts
from a 4×4 map made by a linear layer of w (DCGAN-like, not
StyleGAN's learned constant: with a constant input and instance norm the first version of this
net collapsed to one digit by step 1,000 on MNIST) and runs L = 1 + log2(img_size/4)
:class:`StyleConv` layers (×2 upsampling except the first, 3×3 conv → LeakyReLU → pixel norm →
FiLM with a per-layer affine of w_l), then a 1×1 conv and tanh. No noise inputs and no batch
statistics: every sample is a deterministic function of its own w. ``w_avg`` (a buffer) is the running mean of the mapping outputs while training
(StyleGAN's ``w_avg_beta`` = 0.995), used for truncation w̄ + ψ(w − w̄).

``style_genda`` — the same net plus GenDA's attribute adaptor: per-layer w'_l = a_l ⊙ w + b_l with
a = 1, b = 0 at the start, so a freshly built copy with the source weights reproduces the
source generator exactly. In training mode latents are truncated with ``train_psi`` (0.7 in the
paper), in eval mode ψ = 1 (the paper's test-time setting).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from fmlab.errors import ConfigError
from fmlab.gan.nets.base import Generator, check_sizes, register_generator
from fmlab.gan.nets.layers import conv, linear


class StyleConv(nn.Module):
    """3×3 conv → LeakyReLU → PixelNorm → x·(1 + γ(w)) + β(w) (γ, β affine in w).

    Pixel norm (PGGAN) normalises each pixel's channel vector, so it needs no batch statistics
    and keeps the spatial content that instance norm would wash out."""

    def __init__(self, cin: int, cout: int, w_dim: int, upsample: bool) -> None:
        super().__init__()
        self.upsample = upsample
        self.conv = conv(cin, cout, 3)
        self.affine = nn.Linear(w_dim, 2 * cout)
        nn.init.normal_(self.affine.weight, 0.0, 1.0 / math.sqrt(w_dim))
        nn.init.zeros_(self.affine.bias)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = F.leaky_relu(self.conv(x), 0.2)
        x = x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)
        gamma, beta = self.affine(w)[:, :, None, None].chunk(2, dim=1)
        return x * (1 + gamma) + beta


@register_generator("style")
class StyleGenerator(Generator):
    """Mapping MLP z → w plus a FiLM-modulated synthesis network (see the module docstring).

    Args:
        z_dim: latent size.
        w_dim: intermediate latent size.
        ch: base width; the 4×4 and 8×8 layers have 4·ch channels, halving per resolution.
        channels: image channels.
        img_size: output side, 4·2^k (8, 16, 32, ...).
        mapping_layers: depth of the mapping MLP.
        num_classes: must be 0 (unconditional only).
        w_avg_beta: momentum of the running w̄ in training mode (1.0 freezes it).
    """

    def __init__(self, z_dim: int = 64, w_dim: int = 64, ch: int = 16, channels: int = 1,
                 img_size: int = 32, mapping_layers: int = 3, num_classes: int = 0,
                 w_avg_beta: float = 0.995) -> None:
        who = type(self).__name__
        z_dim, w_dim, ch, channels, img_size, mapping_layers = check_sizes(
            who, z_dim=z_dim, w_dim=w_dim, ch=ch, channels=channels, img_size=img_size,
            mapping_layers=mapping_layers)
        (num_classes,) = check_sizes(who, 0, num_classes=num_classes)
        if num_classes:
            raise ConfigError(f"{who}: num_classes must be 0 (unconditional), got {num_classes}")
        k = math.log2(img_size / 4) if img_size >= 4 else -1
        if k < 0 or k != int(k):
            raise ConfigError(f"{who}: img_size must be 4·2^k (8, 16, 32, ...), got {img_size}")
        if not 0.0 <= float(w_avg_beta) <= 1.0:
            raise ConfigError(f"{who}: w_avg_beta must lie in [0, 1], got {w_avg_beta}")
        super().__init__(z_dim, 0, (channels, img_size, img_size))
        self.w_dim, self.w_avg_beta = w_dim, float(w_avg_beta)
        layers: list[nn.Module] = []
        for i in range(mapping_layers):
            layers += [linear(z_dim if i == 0 else w_dim, w_dim), nn.LeakyReLU(0.2)]
        self.mapping = nn.Sequential(*layers)
        widths = [4 * ch] + [max(4 * ch >> max(r - 1, 0), 1) for r in range(1, int(k) + 1)]
        self.ch0 = widths[0]
        self.input = linear(w_dim, widths[0] * 16)
        convs = [StyleConv(widths[0], widths[0], w_dim, upsample=False)]
        convs += [StyleConv(cin, cout, w_dim, upsample=True)
                  for cin, cout in zip(widths[:-1], widths[1:])]
        self.convs = nn.ModuleList(convs)
        self.to_img = conv(widths[-1], channels, 1)
        self.register_buffer("w_avg", torch.zeros(w_dim))

    @property
    def num_layers(self) -> int:
        """L: how many per-layer latents :meth:`synthesis` takes."""
        return len(self.convs)

    def map(self, z: torch.Tensor) -> torch.Tensor:
        """w = mapping(PixelNorm(z)), (B, w_dim); tracks w̄ in training mode."""
        z = z * torch.rsqrt(z.pow(2).mean(dim=1, keepdim=True) + 1e-8)
        w = self.mapping(z)
        if self.training and self.w_avg_beta < 1.0:
            with torch.no_grad():
                self.w_avg.lerp_(w.detach().mean(0).to(self.w_avg.dtype), 1.0 - self.w_avg_beta)
        return w

    def truncate(self, w: torch.Tensor, psi: float) -> torch.Tensor:
        """w̄ + ψ(w − w̄); ψ = 1 returns w itself."""
        return w if psi == 1.0 else self.w_avg + psi * (w - self.w_avg)

    def synthesis(self, ws: torch.Tensor, w_in: torch.Tensor) -> torch.Tensor:
        """Images from the input latent ``w_in`` (B, w_dim), which makes the 4×4 input map, and
        the per-layer style latents ``ws`` (B, L, w_dim) of the FiLM layers."""
        x = self.input(w_in).view(ws.shape[0], self.ch0, 4, 4)
        for i, layer in enumerate(self.convs):
            x = layer(x, ws[:, i])
        return torch.tanh(self.to_img(x))

    def styles(self, w: torch.Tensor) -> torch.Tensor:
        """The per-layer latents: w broadcast to every layer (B, L, w_dim)."""
        return w.unsqueeze(1).expand(-1, self.num_layers, -1)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None,
                psi: float = 1.0) -> torch.Tensor:
        self._check(z, y)
        w = self.truncate(self.map(z), psi)
        return self.synthesis(self.styles(w), w)


@register_generator("style_genda")
class GenDAGenerator(StyleGenerator):
    """:class:`StyleGenerator` with GenDA's attribute adaptor w'_l = a_l ⊙ w + b_l.

    ``adaptor_a`` (ones) and ``adaptor_b`` (zeros) are (L, w_dim) parameters — 2·L·w_dim scalars,
    the only generator weights GenDA trains. They act on the style latents of the L FiLM layers,
    not on the latent that makes the 4×4 input map: that map plays the role of StyleGAN's
    constant input, which the paper's adaptor does not touch (a first version that also adapted
    it turned every digit into a copy of the target's stroke). In training mode the latents are truncated with
    ``train_psi`` before the adaptor (easier optimisation from one image); ``forward`` in eval
    mode uses ψ = 1 unless ``psi`` is given.

    Args:
        train_psi: truncation in training mode (paper ≈ 0.7), in (0, 1].
        **kw: :class:`StyleGenerator` arguments; ``w_avg_beta`` defaults to 1.0 (w̄ frozen:
            it is the source generator's mean, set once before adapting).
    """

    def __init__(self, train_psi: float = 0.7, w_avg_beta: float = 1.0, **kw) -> None:
        super().__init__(w_avg_beta=w_avg_beta, **kw)
        if not 0.0 < float(train_psi) <= 1.0:
            raise ConfigError(f"GenDAGenerator: train_psi must lie in (0, 1], got {train_psi}")
        self.train_psi = float(train_psi)
        self.adaptor_a = nn.Parameter(torch.ones(self.num_layers, self.w_dim))
        self.adaptor_b = nn.Parameter(torch.zeros(self.num_layers, self.w_dim))

    def styles(self, w: torch.Tensor) -> torch.Tensor:
        return self.adaptor_a * super().styles(w) + self.adaptor_b

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None,
                psi: float | None = None) -> torch.Tensor:
        if psi is None:
            psi = self.train_psi if self.training else 1.0
        return super().forward(z, y, psi)

    def adaptor_parameters(self) -> list[nn.Parameter]:
        """The attribute adaptor's (a, b)."""
        return [self.adaptor_a, self.adaptor_b]
