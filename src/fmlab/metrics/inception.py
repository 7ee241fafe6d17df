"""The FID-Inception network: Inception-v3 as in TensorFlow's 2015-12-05 graph.

This is the network behind published FID/IS numbers, in the layer and parameter layout of the
PyTorch port of those TF weights (``pt_inception-2015-12-05-*.pth``, torchvision names:
``Conv2d_1a_3x3 … Mixed_7c``, ``fc`` with 1008 classes, no auxiliary head). It differs from
torchvision's Inception-v3 in three places, all in the pooling branches of the mixed blocks:

- Mixed_5b-d (A), Mixed_6b-e (C) and Mixed_7b (E): the 3x3/stride-1 average pool ignores the
  zero padding (TF's ``avg_pool`` with SAME padding), i.e. ``count_include_pad=False``;
- Mixed_7c (E): the pooling branch is a 3x3 *max* pool.

The convolution blocks and the parameter layout are torchvision's (imported, not re-implemented);
only the forward passes of the mixed blocks are defined here. Weights are never downloaded:
pass a local file, or get random initialisation (shape tests only).

Input: float images in [0, 255] of any size; they are resized to 299x299 with the TF1 legacy
bilinear rule and mapped to [-1, 1) by (x - 128) / 128, as the TF graph does.
Output of :meth:`FIDInceptionV3.forward`: the 2048-d pool3 features and the 1008 logits without
the fc bias (the "unbiased" logits used for the Inception Score).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.inception import (
    BasicConv2d,
    InceptionA,
    InceptionB,
    InceptionC,
    InceptionD,
    InceptionE,
)

from fmlab.metrics.resize import tf1_bilinear_resize

INPUT_SIZE = (299, 299)
NUM_CLASSES = 1008
FEATURE_DIM = 2048


def _tf_avg_pool(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


def _tf_max_pool(x: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(x, 3, stride=1, padding=1)


def _seq(x: torch.Tensor, *layers: nn.Module) -> torch.Tensor:
    for layer in layers:
        x = layer(x)
    return x


class _MixedA(InceptionA):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            self.branch1x1(x),
            _seq(x, self.branch5x5_1, self.branch5x5_2),
            _seq(x, self.branch3x3dbl_1, self.branch3x3dbl_2, self.branch3x3dbl_3),
            self.branch_pool(_tf_avg_pool(x)),
        ], 1)


class _MixedC(InceptionC):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            self.branch1x1(x),
            _seq(x, self.branch7x7_1, self.branch7x7_2, self.branch7x7_3),
            _seq(x, self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3,
                 self.branch7x7dbl_4, self.branch7x7dbl_5),
            self.branch_pool(_tf_avg_pool(x)),
        ], 1)


class _MixedE(InceptionE):
    """InceptionE with a choosable pooling branch (average for 7b, max for 7c)."""

    def __init__(self, in_channels: int, max_pool: bool) -> None:
        super().__init__(in_channels)
        self._pool = _tf_max_pool if max_pool else _tf_avg_pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_1(x)
        d3 = _seq(x, self.branch3x3dbl_1, self.branch3x3dbl_2)
        return torch.cat([
            self.branch1x1(x),
            self.branch3x3_2a(b3), self.branch3x3_2b(b3),
            self.branch3x3dbl_3a(d3), self.branch3x3dbl_3b(d3),
            self.branch_pool(self._pool(x)),
        ], 1)


class FIDInceptionV3(nn.Module):
    """FID-Inception: [0, 255] images -> (pool3 features (N, 2048), unbiased logits (N, 1008)).

    Use it through ``create_extractor("inception_v3", weights=...)``, which loads the weights
    and wraps the uint8 handling; see the module docstring for how it differs from
    torchvision's Inception-v3.
    """

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.Mixed_5b = _MixedA(192, pool_features=32)
        self.Mixed_5c = _MixedA(256, pool_features=64)
        self.Mixed_5d = _MixedA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = _MixedC(768, channels_7x7=128)
        self.Mixed_6c = _MixedC(768, channels_7x7=160)
        self.Mixed_6d = _MixedC(768, channels_7x7=160)
        self.Mixed_6e = _MixedC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = _MixedE(1280, max_pool=False)
        self.Mixed_7c = _MixedE(2048, max_pool=True)
        self.fc = nn.Linear(FEATURE_DIM, NUM_CLASSES)

    @staticmethod
    def prepare(x: torch.Tensor) -> torch.Tensor:
        """[0, 255] float NCHW (any size) -> the network's 299x299 input in [-1, 1).

        Examples:
            >>> import torch
            >>> x = FIDInceptionV3.prepare(torch.full((1, 3, 32, 32), 255.0))
            >>> tuple(x.shape), round(float(x.max()), 4)  # (255 - 128) / 128
            ((1, 3, 299, 299), 0.9922)
        """
        return (tf1_bilinear_resize(x, INPUT_SIZE) - 128.0) / 128.0

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """Prepared input -> 2048-d pool3 features."""
        x = _seq(x, self.Conv2d_1a_3x3, self.Conv2d_2a_3x3, self.Conv2d_2b_3x3)
        x = F.max_pool2d(x, 3, stride=2)
        x = _seq(x, self.Conv2d_3b_1x1, self.Conv2d_4a_3x3)
        x = F.max_pool2d(x, 3, stride=2)
        x = _seq(x, self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b,
                 self.Mixed_6c, self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b,
                 self.Mixed_7c)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.trunk(self.prepare(x))
        return feats, feats @ self.fc.weight.T
