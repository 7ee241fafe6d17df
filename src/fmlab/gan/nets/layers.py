"""Building blocks shared by the convolutional nets: (SN-)conv/linear factories, self-attention,
residual blocks for SNGAN/BigGAN discriminators."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from fmlab.gan.conditioning import maybe_sn


def conv(cin: int, cout: int, k: int = 3, s: int = 1, p: int | None = None, sn: bool = False,
         init: str = "xavier", bias: bool = True) -> nn.Module:
    """Conv2d, initialised before spectral norm is wrapped around it."""
    layer = nn.Conv2d(cin, cout, k, s, k // 2 if p is None else p, bias=bias)
    _init(layer, init)
    return maybe_sn(layer, sn)


def linear(cin: int, cout: int, sn: bool = False, init: str = "xavier",
           bias: bool = True) -> nn.Module:
    layer = nn.Linear(cin, cout, bias=bias)
    _init(layer, init)
    return maybe_sn(layer, sn)


def _init(layer: nn.Module, init: str) -> None:
    if init == "ortho":
        nn.init.orthogonal_(layer.weight)
    elif init == "xavier":
        nn.init.xavier_uniform_(layer.weight)
    elif init == "normal":  # DCGAN's N(0, 0.02)
        nn.init.normal_(layer.weight, 0.0, 0.02)
    if getattr(layer, "bias", None) is not None:
        nn.init.zeros_(layer.bias)


class SelfAttention(nn.Module):
    """SAGAN self-attention: x + γ·o(softmax(θᵀφ) g), with φ and g max-pooled by 2; γ starts at 0."""

    def __init__(self, ch: int, sn: bool = True) -> None:
        super().__init__()
        self.ch = ch
        self.theta = conv(ch, max(ch // 8, 1), 1, sn=sn, bias=False)
        self.phi = conv(ch, max(ch // 8, 1), 1, sn=sn, bias=False)
        self.g = conv(ch, max(ch // 2, 1), 1, sn=sn, bias=False)
        self.o = conv(max(ch // 2, 1), ch, 1, sn=sn, bias=False)
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        theta = self.theta(x).flatten(2)                      # (B, c8, HW)
        phi = F.max_pool2d(self.phi(x), 2).flatten(2)         # (B, c8, HW/4)
        g = F.max_pool2d(self.g(x), 2).flatten(2)             # (B, c2, HW/4)
        attn = torch.softmax(theta.transpose(1, 2) @ phi, dim=-1)  # (B, HW, HW/4)
        out = (g @ attn.transpose(1, 2)).view(b, -1, h, w)
        return x + self.gamma * self.o(out)


class DBlock(nn.Module):
    """Residual D block (pre-activation unless ``first``), optional 2× average-pool downsampling.

    ``first`` is SNGAN's "optimised" block: conv-ReLU-conv on the raw image, shortcut pool-then-1×1.
    """

    def __init__(self, cin: int, cout: int, down: bool, first: bool = False, sn: bool = True,
                 init: str = "xavier") -> None:
        super().__init__()
        self.down, self.first = down, first
        self.c1 = conv(cin, cout, 3, sn=sn, init=init)
        self.c2 = conv(cout, cout, 3, sn=sn, init=init)
        self.learn_sc = cin != cout or down
        if self.learn_sc:
            self.csc = conv(cin, cout, 1, sn=sn, init=init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.first else F.relu(x)
        h = self.c2(F.relu(self.c1(h)))
        if self.down:
            h = F.avg_pool2d(h, 2)
        sc = x
        if self.learn_sc:
            if self.first:
                sc = self.csc(F.avg_pool2d(sc, 2) if self.down else sc)
            else:
                sc = self.csc(sc)
                if self.down:
                    sc = F.avg_pool2d(sc, 2)
        return h + sc


def has_spectral_norm(module: nn.Module) -> bool:
    """True if the module's ``weight`` is spectrally normalised (parametrization API)."""
    return nn.utils.parametrize.is_parametrized(module, "weight") and any(
        type(p).__name__ == "_SpectralNorm" for p in module.parametrizations.weight
    )


class GBlock(nn.Module):
    """Residual G block: BN-ReLU-up2-conv3-BN-ReLU-conv3, shortcut up2-conv1.

    ``make_bn(num_features)`` builds the (conditional) norm; both norm kinds take ``(x, c)`` where c
    is class labels (SNGAN) or BigGAN's conditioning vector.
    """

    def __init__(self, cin: int, cout: int, make_bn: Callable[[int], nn.Module],
                 sn: bool = False,
                 init: str = "xavier") -> None:
        super().__init__()
        self.bn1 = make_bn(cin)
        self.c1 = conv(cin, cout, 3, sn=sn, init=init)
        self.bn2 = make_bn(cout)
        self.c2 = conv(cout, cout, 3, sn=sn, init=init)
        self.csc = conv(cin, cout, 1, sn=sn, init=init)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        h = F.interpolate(F.relu(self.bn1(x, c)), scale_factor=2, mode="nearest")
        h = self.c2(F.relu(self.bn2(self.c1(h), c)))
        return h + self.csc(F.interpolate(x, scale_factor=2, mode="nearest"))
