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



@torch.no_grad()
def predict_logits(model: torch.nn.Module, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Logits of a batch of images, computed in eval mode, ``batch_size`` images at a time.

    The model's train/eval mode is restored afterwards, so a training monitor can call this.

    Args:
        model: a classifier mapping images (uint8 or preprocessed) to logits.
        images: the images, in chunks of ``batch_size``.
        batch_size: images per forward pass.

    Returns:
        float32 CPU logits ``(N, num_classes)``; an empty tensor for no images.

    Examples:
        >>> import torch
        >>> model = torch.nn.Linear(3, 2).train()
        >>> predict_logits(model, torch.ones(5, 3), batch_size=2).shape, model.training
        (torch.Size([5, 2]), True)
    """
    was = model.training
    model.eval()
    try:
        out = [model(images[i:i + batch_size]).float().cpu()
               for i in range(0, len(images), batch_size)]
    finally:
        model.train(was)
    return torch.cat(out) if out else torch.zeros(0)
