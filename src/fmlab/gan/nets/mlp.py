"""The MLP GAN of csinva/gan-vae-pretrained-pytorch (MNIST), loadable from its checkpoints.

Modules are registered under the names ``"0"``… exactly as in the original ``nn.Sequential`` so
``G--300.ckpt`` / ``D--300.ckpt`` load with ``strict=True``. D's Sigmoid (module ``"5"``) is kept
for :meth:`MLPDiscriminator.prob`, but ``forward`` returns the logit before it, which is what the
adversarial losses take.

Conditional variants (not in the checkpoints): G concatenates a one-hot label to z; D puts a
:class:`~fmlab.gan.conditioning.ConditionHead` on its 256-d embedding.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from fmlab.gan.nets.base import (
    Discriminator,
    Generator,
    check_img_shape,
    check_sizes,
    register_discriminator,
    register_generator,
)


@register_generator("mlp")
class MLPGenerator(Generator):
    """Linear(z[+K],h)-ReLU-Linear(h,h)-ReLU-Linear(h,C·H·W)-Tanh, reshaped to (B, C, H, W)."""

    def __init__(self, z_dim: int = 64, hidden: int = 256, img_shape: tuple[int, int, int] = (1, 28, 28),
                 num_classes: int = 0) -> None:
        super().__init__(z_dim, num_classes, img_shape)
        (hidden,) = check_sizes(type(self).__name__, hidden=hidden)
        out = math.prod(self.img_shape)
        layers = [nn.Linear(z_dim + max(num_classes, 0), hidden), nn.ReLU(),
                  nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, out), nn.Tanh()]
        for i, layer in enumerate(layers):
            self.add_module(str(i), layer)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        y = self._check(z, y)
        h = z if y is None else torch.cat([z, F.one_hot(y, self.num_classes).to(z.dtype)], 1)
        for i in range(6):
            h = self._modules[str(i)](h)
        return h.view(z.shape[0], *self.img_shape)


@register_discriminator("mlp")
class MLPDiscriminator(Discriminator):
    """Linear(CHW,h)-LReLU(.2)-Linear(h,h)-LReLU(.2) = φ; ψ = Linear(h,1); Sigmoid kept aside."""

    def __init__(self, hidden: int = 256, img_shape: tuple[int, int, int] = (1, 28, 28),
                 num_classes: int = 0, cond: str | None = None, sn: bool = False) -> None:
        (hidden,) = check_sizes(type(self).__name__, hidden=hidden)
        shape = check_img_shape(type(self).__name__, img_shape)
        super().__init__(hidden, num_classes, cond, sn=sn, own_psi=False)
        self.img_shape = shape
        layers = [nn.Linear(math.prod(self.img_shape), hidden), nn.LeakyReLU(0.2),
                  nn.Linear(hidden, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 1), nn.Sigmoid()]
        for i, layer in enumerate(layers):
            if sn and isinstance(layer, nn.Linear):
                layer = nn.utils.parametrizations.spectral_norm(layer)
            self.add_module(str(i), layer)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        self._check_x(x, self.img_shape)
        h = x.reshape(x.shape[0], -1)
        for i in range(4):
            h = self._modules[str(i)](h)
        return h

    def adv_logit(self, phi: torch.Tensor) -> torch.Tensor:
        return self._modules["4"](phi).squeeze(1)

    def prob(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The original network's output, sigmoid(logit), shape (B,)."""
        return self._modules["5"](self(x, y).logits)
