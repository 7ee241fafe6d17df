"""Evaluation helpers shared by the CLI and tests."""

from __future__ import annotations

import torch

from fmlab.errors import DataError, ModelError


@torch.no_grad()
def classify_accuracy(backbone, split, batch_size: int = 500) -> dict:
    """Accuracy of ``backbone``'s own head on a labelled split, streamed in batches."""
    if backbone.head is None:
        raise ModelError(f"backbone {backbone.name} has no classifier head")
    if split.labels is None:
        raise DataError(f"split {split.name!r} of {split.origin} has no labels")
    backbone.eval()
    correct = 0
    for idx, images in split.iter_batches(batch_size):
        pred = backbone(torch.from_numpy(images)).argmax(1).numpy()
        correct += int((pred == split.labels[idx]).sum())
    n = len(split)
    return {"accuracy": correct / n if n else float("nan"), "n": n}

