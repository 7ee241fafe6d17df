"""Objectives that are not a method of their own: plain supervised classification.

Several workflows train a small classifier with the engine (the unlearning guide, ParGANDA's
test classifiers); they share this one objective instead of each writing its own.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ClassificationObjective(nn.Module):
    """Cross-entropy of ``net(batch["images"])`` against ``batch["labels"]``, logging accuracy.

    Args:
        net: any module mapping a batch of images to (B, K) logits.

    Examples:
        >>> obj = ClassificationObjective(nn.Sequential(nn.Flatten(), nn.Linear(4, 3, bias=False)))
        >>> loss, logs = obj({"images": torch.zeros(2, 1, 2, 2), "labels": torch.tensor([0, 2])})
        >>> round(loss.item(), 4), logs["acc"]   # zero logits: log 3; argmax 0 hits one of two
        (1.0986, 0.5)
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        logits = self.net(batch["images"])
        loss = F.cross_entropy(logits, batch["labels"])
        acc = (logits.argmax(1) == batch["labels"]).float().mean()
        return loss, {"acc": float(acc)}
