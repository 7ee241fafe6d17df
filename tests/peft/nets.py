"""Tiny networks for the peft tests (seconds, not minutes)."""

from __future__ import annotations

import torch
from torch import nn


class TinyConvNet(nn.Module):
    """conv(3→8, 3×3) → BN → ReLU → conv(8→8, 3×3) → pool → fc(8→16) → ReLU → head(16→3)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.fc = nn.Linear(8, 16)
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.conv2(x).mean(dim=(2, 3))
        return self.head(torch.relu(self.fc(x)))


class TinyAttnNet(nn.Module):
    """Conv patches → nn.MultiheadAttention (batch_first) → LayerNorm → fc → head."""

    def __init__(self, dim: int = 8) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, dim, 2, stride=2)
        self.attn = nn.MultiheadAttention(dim, 2, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, 12)
        self.head = nn.Linear(12, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.patch(x).flatten(2).transpose(1, 2)
        t = t + self.attn(t, t, t, need_weights=False)[0]
        return self.head(torch.relu(self.fc(self.norm(t).mean(1))))


def make(cls: type[nn.Module] = TinyConvNet, seed: int = 0, **kw) -> nn.Module:
    torch.manual_seed(seed)
    return cls(**kw).eval()


def tiny_timm_vit(seed: int = 0, depth: int = 2) -> nn.Module:
    """timm's VisionTransformer class at toy size (32×32 input, patch 8, width 192)."""
    import timm

    torch.manual_seed(seed)
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32,
                             patch_size=8, depth=depth, num_classes=5).eval()


def train_steps(model: nn.Module, x: torch.Tensor, steps: int = 3, lr: float = 0.05,
                train_mode: bool = True) -> None:
    """A few SGD steps on a made-up objective so every trainable tensor (and BN stats) moves."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=lr)
    model.train(train_mode)
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        out = model(x)
        target = torch.randn(out.shape, generator=g)
        loss = (out - target).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
