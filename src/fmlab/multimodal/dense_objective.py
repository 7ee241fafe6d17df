"""DenseCLIP's training loss and the batch it reads from a ``canvas`` render.

Kept apart from :mod:`fmlab.multimodal.dense` (the network) so the model file holds only the
architecture; the loss owns the auxiliary score-map term and its learnable background logit.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from fmlab.errors import DataError
from fmlab.multimodal.dense import DenseCLIP
from fmlab.utils.validation import finite_float

__all__ = ["DenseCLIPObjective", "canvas_batch"]


class DenseCLIPObjective(nn.Module):
    """Segmentation loss of a :class:`DenseCLIP` for the engine: ``loss, logs = objective(batch)``.

    ``loss = CE(up(head logits), y) + aux_weight · CE(up([b; s/τ]), y)`` where ``up`` resizes
    bilinearly to the mask size, ``y`` is the semantic mask (0 = background, k+1 = class k) and
    ``b`` a learnable background logit (the auxiliary term exists only with language).

    Args:
        model: the DenseCLIP model (``language=False`` for the baseline).
        aux_weight: weight of the score-map loss (>= 0).
        tau: temperature of the score map (cosines / τ as logits).

    Examples:
        >>> from fmlab.models import create_backbone
        >>> bb = create_backbone("resnet_cifar", depth=8, width=4, seed=0)
        >>> obj = DenseCLIPObjective(DenseCLIP(bb, None, 3, 8, language=False))
        >>> batch = {"images": torch.zeros(2, 32, 32, dtype=torch.uint8), "masks": torch.zeros(2, 32, 32).long()}
        >>> loss, logs = obj(batch); sorted(logs)
        ['loss_seg', 'pixel_acc']
    """

    def __init__(self, model: DenseCLIP, aux_weight: float = 0.4, tau: float = 0.07) -> None:
        super().__init__()
        self.model = model
        self.aux_weight = finite_float("aux_weight", aux_weight, low=0.0)
        self.tau = finite_float("tau", tau, low=0.0, low_open=True)
        self.background = nn.Parameter(torch.zeros(())) if model.language else None

    def _check_batch(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        for key in ("images", "masks"):
            if key not in batch:
                raise DataError(f"batch: no {key!r} (has {sorted(batch)}); DenseCLIP needs images and masks")
        images, masks = batch["images"], batch["masks"]
        if masks.ndim != 3 or masks.shape[0] != images.shape[0]:
            raise DataError(f"masks: shape {tuple(masks.shape)} must be (B,H,W) with B={images.shape[0]}")
        masks = masks.long()
        if masks.numel() and (masks.min() < 0 or masks.max() > self.model.num_classes):
            raise DataError(f"masks: classes in [{int(masks.min())}, {int(masks.max())}] fall outside "
                            f"0..{self.model.num_classes} (0 = background, k+1 = class k)")
        return images, masks

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict]:
        """Loss and logs (``loss_seg``, ``pixel_acc``, and ``loss_aux`` with language).

        Args:
            batch: ``images`` uint8 (B,H,W[,C]), ``masks`` int64 (B,H,W) semantic classes.

        Returns:
            (scalar loss, dict of 0-d tensors).
        """
        images, masks = self._check_batch(batch)
        size = masks.shape[-2:]
        logits, s = self.model(images)
        logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        loss = F.cross_entropy(logits, masks)
        logs = {"loss_seg": loss.detach(), "pixel_acc": (logits.argmax(1) == masks).float().mean()}
        if s is not None and self.aux_weight > 0:
            bg = self.background.expand(s.shape[0], 1, *s.shape[2:])
            aux_logits = F.interpolate(torch.cat([bg, s / self.tau], 1), size=size, mode="bilinear",
                                       align_corners=False)
            aux = F.cross_entropy(aux_logits, masks)
            logs["loss_aux"] = aux.detach()
            loss = loss + self.aux_weight * aux
        return loss, logs


def canvas_batch(rendered: dict) -> dict[str, torch.Tensor]:
    """The DenseCLIP batch of a ``canvas`` render: images and semantic masks (0 = background).

    Args:
        rendered: the dict of :func:`fmlab.data.synthetic.canvas.render_canvas` (``images``,
            instance ``masks``, ``labels``).

    Returns:
        ``{"images": uint8 (B,S,S,3), "masks": int64 (B,S,S)}`` with class ``label + 1``.

    Examples:
        >>> import numpy as np
        >>> r = {"images": np.zeros((1, 2, 2, 3), np.uint8), "masks": np.array([[[0, 1], [2, 2]]]),
        ...      "labels": np.array([[7, 3]])}
        >>> canvas_batch(r)["masks"].tolist()
        [[[0, 8], [4, 4]]]
    """
    from fmlab.data.synthetic.canvas import semantic_mask

    sem = semantic_mask(rendered["masks"], rendered["labels"])
    return {"images": torch.as_tensor(rendered["images"]), "masks": torch.as_tensor(sem, dtype=torch.int64)}
