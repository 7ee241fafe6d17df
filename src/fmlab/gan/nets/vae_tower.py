"""GALIP's discriminator at MNIST scale: a pre-trained image tower + a small trainable "mate" head.

GALIP (papers.md #35) builds D on a frozen CLIP-ViT: features of several layers are collected and
a trainable Mate-D turns them (with the sentence, added by :class:`~fmlab.gan.caption_cond.
CaptionDiscriminator`'s projection) into the score. Here the frozen tower is the encoder of the
pre-trained MNIST VAE shipped in ``weights/mnist_small/vae_epoch_25.pth`` (fc1 784→400 ReLU,
fc21 400→20 = μ): its two layers are the multi-layer features. The VAE encoder — not the LeNet-5
— is used so that LeNet-5 stays a *held-out* judge for FID-LeNet and class accuracy.

``pretrained=False, freeze=False`` builds the from-scratch baseline: the same tower, randomly
initialised and trained with the head (an equally sized D).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from fmlab.errors import ModelError
from fmlab.gan.nets.base import Discriminator, check_sizes, register_discriminator
from fmlab.gan.nets.layers import linear

VAE_WEIGHTS = "weights/mnist_small/vae_epoch_25.pth"
VAE_SIDE = 28


class VAEEncoderTower(nn.Module):
    """The MNIST VAE's encoder as a feature tower: (B, 1, H, W) in [-1, 1] → [h1 (400), μ (20)].

    Images are mapped to the VAE's input (pixels in [0, 1], 28×28, bilinear antialiased resize
    when the GAN works at another size), differentiably so G's gradients pass through.
    """

    feature_dim = 420

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(VAE_SIDE * VAE_SIDE, 400)
        self.fc21 = nn.Linear(400, 20)

    def load_pretrained(self, path: str | os.PathLike | None = None) -> VAEEncoderTower:
        """Load fc1/fc21 of the shipped VAE (default: ``$FMLAB_DATA``/:data:`VAE_WEIGHTS`)."""
        from fmlab.models.backbone import load_weights_file

        if path is None:
            from fmlab.data import data_root

            path = data_root(None) / VAE_WEIGHTS
        sd = load_weights_file(Path(path))
        keys = ("fc1.weight", "fc1.bias", "fc21.weight", "fc21.bias")
        missing = [k for k in keys if k not in sd]
        if missing:
            raise ModelError(f"{path}: not the MNIST VAE (missing {missing})")
        self.load_state_dict({k: sd[k] for k in keys})
        return self

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = (x.float() + 1.0) / 2.0
        if x.shape[-2:] != (VAE_SIDE, VAE_SIDE):
            x = F.interpolate(x, size=(VAE_SIDE, VAE_SIDE), mode="bilinear", antialias=True,
                              align_corners=False)
        h = F.relu(self.fc1(x.flatten(1)))
        return [h, self.fc21(h)]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The layers concatenated, (B, 420)."""
        return torch.cat(self(x), dim=1)


@register_discriminator("vae_tower")
class TowerDiscriminator(Discriminator):
    """φ(x) = mate([h1(x); μ(x)]) over the VAE tower; ψ(φ) the adversarial logit.

    Args:
        hidden: width of the two-layer mate head (φ's size).
        channels: must be 1 (the VAE sees grey digits).
        img_size: the GAN's image side (resized to 28 for the tower).
        pretrained: load the shipped VAE encoder weights.
        freeze: keep the tower fixed (GALIP); False trains it with the head.
        tower_weights: another VAE weights file (default: the shipped one under the data root).
        num_classes, cond, sn: as every discriminator (a caption run uses 0 / none).
    """

    def __init__(self, hidden: int = 256, channels: int = 1, img_size: int = 32,
                 pretrained: bool = True, freeze: bool = True, tower_weights: str | None = None,
                 num_classes: int = 0, cond: str | None = None, sn: bool = False) -> None:
        hidden, channels, img_size = check_sizes("TowerDiscriminator", hidden=hidden,
                                                 channels=channels, img_size=img_size)
        if channels != 1:
            raise ModelError(f"TowerDiscriminator: the VAE tower takes grey images (channels 1), "
                             f"got channels={channels}")
        super().__init__(hidden, num_classes, cond, sn=sn)
        self.img_shape = (1, img_size, img_size)
        self.tower = VAEEncoderTower()
        if pretrained:
            self.tower.load_pretrained(tower_weights)
        self.frozen_tower = bool(freeze)
        self.tower.requires_grad_(not freeze)
        self.mate = nn.Sequential(linear(VAEEncoderTower.feature_dim, hidden, sn=sn),
                                  nn.LeakyReLU(0.2), linear(hidden, hidden, sn=sn),
                                  nn.LeakyReLU(0.2))

    def train(self, mode: bool = True) -> TowerDiscriminator:
        """A frozen tower stays in eval mode (it has no dropout/BN today; this keeps it so)."""
        super().train(mode)
        if self.frozen_tower:
            self.tower.eval()
        return self

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        self._check_x(x, self.img_shape)
        return self.mate(self.tower.features(x))
