"""LeNet-5 for 32×32 MNIST, with the parameter names of the widely shared checkpoint
(``convnet.c1/c3/c5``, ``fc.f6/f7``). Features are f6's 84-d output after its ReLU — the layer
fmlab's FID-LeNet uses — and the head is f7."""

from __future__ import annotations

import torch
import torch.nn as nn


class LeNet5Trunk(nn.Module):
    def __init__(self, in_chans: int = 1) -> None:
        super().__init__()
        self.convnet = nn.Sequential()
        self.convnet.add_module("c1", nn.Conv2d(in_chans, 6, 5))
        self.convnet.add_module("relu1", nn.ReLU())
        self.convnet.add_module("s2", nn.MaxPool2d(2))
        self.convnet.add_module("c3", nn.Conv2d(6, 16, 5))
        self.convnet.add_module("relu3", nn.ReLU())
        self.convnet.add_module("s4", nn.MaxPool2d(2))
        self.convnet.add_module("c5", nn.Conv2d(16, 120, 5))
        self.convnet.add_module("relu5", nn.ReLU())
        self.fc = nn.Sequential()
        self.fc.add_module("f6", nn.Linear(120, 84))
        self.fc.add_module("relu6", nn.ReLU())
        self.feature_dim = 84

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.convnet(x).flatten(1))
