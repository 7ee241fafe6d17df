"""Tiny models and data for the objective tests (fast on 2 CPU cores)."""

from __future__ import annotations

import pytest
import torch
from torch import nn


class TinyCNN(nn.Module):
    """float (N, C, H, W) -> (N, D); BatchNorm so EMA copies have buffers to follow."""

    def __init__(self, in_chans: int = 3, dim: int = 32) -> None:
        super().__init__()
        self.feature_dim = dim
        self.net = nn.Sequential(
            nn.Conv2d(in_chans, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, dim, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def clustered_images(n: int, n_classes: int, size: int = 16, seed: int = 0
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (n, size, size, 3) images: a per-class colour plus noise; labels 0..n_classes-1."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % n_classes
    colours = torch.rand(n_classes, 3, generator=g) * 200
    noise = torch.rand(n, size, size, 3, generator=g) * 55
    images = (colours[labels].view(n, 1, 1, 3) + noise).clamp(0, 255).to(torch.uint8)
    return images, labels


def train_losses(objective: nn.Module, make_batch, steps: int = 40, lr: float = 1e-3
                 ) -> list[float]:
    """Run Adam for ``steps`` steps calling the objective's hooks; return the losses."""
    torch.manual_seed(0)
    params = [p for p in objective.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    hook_start = getattr(objective, "on_train_start", None)
    if hook_start:
        hook_start(steps)
    objective.train()
    losses = []
    for step in range(steps):
        loss, logs = objective(make_batch(step))
        assert loss.ndim == 0 and torch.isfinite(loss)
        assert all(isinstance(v, (float, int)) or (torch.is_tensor(v) and v.ndim == 0)
                   for v in logs.values())
        opt.zero_grad()
        loss.backward()
        before = getattr(objective, "on_before_optimizer_step", None)
        if before:
            before(step, steps)
        opt.step()
        objective.on_after_optimizer_step(step, steps)
        losses.append(float(loss.detach()))
    return losses


def head_tail(losses: list[float], k: int = 5) -> tuple[float, float]:
    return sum(losses[:k]) / k, sum(losses[-k:]) / k


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Tiny tensors: one thread (see tests/conftest.py)."""


@pytest.fixture
def tiny_cnn() -> TinyCNN:
    torch.manual_seed(0)
    return TinyCNN()
