"""CIFAR ResNets with option-A shortcuts (He et al. 2016, §4.2).

Parameter names match the widely used BSD-2 checkpoints (``conv1, bn1, layer1..3.{i}.conv1/bn1/
conv2/bn2, linear``) so ``resnet{20,32,44,56}-*.th`` load strictly after stripping ``module.``.
Depth is 6n+2 with n blocks per stage; ``width`` is the first stage's channel count (16 in the paper).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class _ShortcutA(nn.Module):
    """Parameter-free shortcut: subsample by 2 and zero-pad the new channels evenly on both sides."""

    def __init__(self, pad: int) -> None:
        super().__init__()
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = _ShortcutA((planes - in_planes) // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNetCifarTrunk(nn.Module):
    """Everything up to the global average pool: float (N,C,32,32) → (N, 4·width)."""

    def __init__(self, depth: int = 20, width: int = 16, in_chans: int = 3) -> None:
        super().__init__()
        if (depth - 2) % 6 != 0 or depth < 8:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 (8, 14, 20, ...), got {depth}")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_chans, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        planes = [width, 2 * width, 4 * width]
        self.layer1 = self._stage(width, planes[0], n, 1)
        self.layer2 = self._stage(planes[0], planes[1], n, 2)
        self.layer3 = self._stage(planes[1], planes[2], n, 2)
        self.feature_dim = planes[2]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    @staticmethod
    def _stage(in_planes: int, planes: int, n: int, stride: int) -> nn.Sequential:
        blocks = [BasicBlock(in_planes, planes, stride)]
        blocks += [BasicBlock(planes, planes, 1) for _ in range(n - 1)]
        return nn.Sequential(*blocks)

    def forward_map(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map (N, 4·width, H/4, W/4), for dense objectives."""
        x = F.relu(self.bn1(self.conv1(x)))
        return self.layer3(self.layer2(self.layer1(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_map(x).mean(dim=(2, 3))
