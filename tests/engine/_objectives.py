"""Tiny objectives and data shared by the engine tests and their subprocess workers."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fmlab.engine.ema import EMA


def blobs(n: int = 96, dim: int = 8, classes: int = 4, seed: int = 0):
    """Gaussian clusters: float features (n, dim) and int64 labels."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=g) * 3
    y = torch.arange(n) % classes
    x = centres[y] + torch.randn(n, dim, generator=g)
    return x, y


class TinyObjective(nn.Module):
    """Supervised CE through a small MLP encoder; optional dropout and EMA teacher.

    Dropout draws from the global torch RNG and the EMA lives in the state_dict, so exact resume
    covers both.
    """

    def __init__(self, dim: int = 8, hidden: int = 16, classes: int = 4, dropout: float = 0.0,
                 ema: bool = False, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        layers: list[nn.Module] = [nn.Linear(dim, hidden), nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        self.encoder = nn.Sequential(*layers)
        self.head = nn.Linear(hidden, classes)
        self.teacher = EMA(self.encoder, 0.9) if ema else None
        self.steps_seen: list[int] = []

    def forward(self, batch):
        logits = self.head(self.encoder(batch["images"].float()))
        loss = F.cross_entropy(logits, batch["labels"])
        logs = {"acc": (logits.argmax(1) == batch["labels"]).float().mean()}
        if self.teacher is not None:
            logs["teacher_gap"] = float((self.teacher.module[0].weight.detach()
                                         - self.encoder[0].weight.detach()).abs().mean())
        return loss, logs

    def on_after_optimizer_step(self, step: int, max_steps: int) -> None:
        self.steps_seen.append(step)
        if self.teacher is not None:
            self.teacher.set_momentum(step, max_steps, base=0.9)
            self.teacher.update(self.encoder)


class LinearRegression(nn.Module):
    """Mean squared error of a bias-free linear map (no BN: batch splits change nothing)."""

    def __init__(self, dim: int = 8, out: int = 3, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.encoder = nn.Linear(dim, out, bias=False)

    def forward(self, batch):
        pred = self.encoder(batch["images"].float())
        return F.mse_loss(pred, batch["targets"]), {}


def noise_transform(batch, generator):
    """An augmentation stand-in: Gaussian noise drawn from the engine's generator."""
    x = batch["images"].float()
    noise = torch.randn(x.shape, generator=generator, device=x.device)
    return dict(batch, images=x + 0.1 * noise)


def weights(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}
