"""A picture of open-vocabulary box retrieval: the top-ranked candidate boxes of one text query."""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F

from fmlab.utils.validation import positive_int


@torch.no_grad()
def top_boxes(encoder: torch.nn.Module, images: torch.Tensor, boxes: torch.Tensor, query: torch.Tensor,
              k: int = 16, valid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ``k`` candidate boxes (over all images) scored highest by ``cos(region, query)``.

    Args:
        encoder: a :class:`~fmlab.multimodal.region.RegionEncoder`.
        images: (B, ...) images; boxes (B, M, 4) candidates.
        boxes: see ``images``.
        query: (D,) text embedding.
        k: how many boxes.
        valid: (B, M) bool, the candidates that may be shown (None: all; padding rows should be False).

    Returns:
        (image index (k,), candidate index (k,), score (k,)), best first.
    """
    k = positive_int("k", k)
    was = encoder.training
    encoder.eval()
    regions = F.normalize(encoder(images, boxes), dim=-1)
    encoder.train(was)
    scores = (regions @ F.normalize(query.to(regions), dim=-1)).reshape(-1)
    if valid is not None:
        scores = scores.masked_fill(~valid.reshape(-1), float("-inf"))
    best = torch.topk(scores, min(k, scores.numel())).indices
    m = boxes.shape[1]
    return best // m, best % m, scores[best]


def draw_top_boxes(encoder: torch.nn.Module, images: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor,
                   queries: torch.Tensor, classes: list[int], names: list[str], path: str | os.PathLike,
                   k: int = 8) -> str:
    """Save one row per class query: its ``k`` top-ranked boxes (green: shows the class, red: does not).

    Args:
        encoder: the region encoder.
        images: (B,H,W,3) uint8 canvases.
        boxes: (B, M, 4) candidate boxes; labels (B, M) their classes (-1 background, -2 ignored).
        labels: see ``boxes``.
        queries: (Q, D) class queries, row q for ``classes[q]`` named ``names[q]``.
        classes: see ``queries``.
        names: see ``queries``.
        path: the PNG to write.
        k: boxes per row.

    Returns:
        ``path`` as a string.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.patches as mpatches
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(classes), k, figsize=(k * 1.5, len(classes) * 1.75 + 0.3), squeeze=False)
    for row, (query, cls, name) in enumerate(zip(queries, classes, names)):
        img_i, box_i, score = top_boxes(encoder, images, boxes, query, k, labels >= -1)
        hits = 0
        for j, (i, b, s) in enumerate(zip(img_i.tolist(), box_i.tolist(), score.tolist())):
            ax = axes[row, j]
            ax.imshow(images[i].numpy(), extent=(0, images.shape[2], images.shape[1], 0))  # pixel edges
            x0, y0, x1, y1 = boxes[i, b].tolist()
            ok = int(labels[i, b]) == cls
            hits += ok
            ax.add_patch(mpatches.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, lw=2,
                                            edgecolor="lime" if ok else "red"))
            ax.set_title(f"#{j + 1} {s:.2f}", fontsize=7)
        axes[row, 0].set_ylabel(f"'{name}': {hits}/{len(img_i)}", fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("top-ranked candidate boxes per novel-class text query (green: IoU >= 0.5 with an object "
                 "of the class)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)
