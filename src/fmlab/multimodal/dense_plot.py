"""The DenseCLIP picture: test images, ground truth, prediction and each class's score map.

One row per image; columns: the image, the ground-truth class map, the predicted class map,
then the pixel-text score map ``s_k`` (cosine, resized to the image) of every class ``k``, with
its class name on top. Class maps use one fixed colour per class (background black) and a
legend. Written atomically as PNG.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def class_colours(num_classes: int) -> np.ndarray:
    """(num_classes + 1, 3) float RGB: black background, then tab10/tab20 colours.

    Examples:
        >>> c = class_colours(3); c.shape, c[0].tolist()
        ((4, 3), [0.0, 0.0, 0.0])
    """
    from matplotlib import colormaps

    cmap = colormaps["tab10" if num_classes <= 10 else "tab20"]
    cols = [cmap(i % cmap.N)[:3] for i in range(num_classes)]
    return np.asarray([(0.0, 0.0, 0.0), *cols], dtype=np.float64)


def score_map_picture(path: str | Path, images, truth, pred, scores, class_names: Sequence[str],
                      title: str = "") -> Path:
    """Draw the grid and write it as PNG (atomically).

    Args:
        path: the PNG to write.
        images: uint8 (N, H, W[, 3]).
        truth: int (N, H, W) ground-truth classes (0 = background, k+1 = class k).
        pred: int (N, H, W) predicted classes.
        scores: float (N, K, h, w) score maps, or None (the language-free baseline: no columns).
        class_names: K names.
        title: the figure's title.

    Returns:
        ``path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from fmlab.utils.io import atomic_write

    images, truth, pred = (np.asarray(a) for a in (images, truth, pred))
    k = len(class_names)
    n = images.shape[0]
    cols = 3 + (0 if scores is None else k)
    colours = class_colours(k)
    legend_rows = -(-k // min(k, max(4, cols)))
    fig, axes = plt.subplots(n, cols, figsize=(max(1.3 * cols, 4.0), 1.35 * n + 0.6 + 0.25 * legend_rows),
                             squeeze=False)
    for i in range(n):
        panels = [(images[i], None, "image"), (colours[truth[i]], None, "truth"), (colours[pred[i]], None, "prediction")]
        if scores is not None:
            s = np.asarray(scores[i])
            lim = (float(s.min()), float(s.max()))  # one colour scale per image: classes compare
            panels += [(s[j], lim, f"s: {class_names[j]}") for j in range(k)]
        for j, (img, lim, name) in enumerate(panels):
            ax = axes[i, j]
            if lim is None:
                ax.imshow(img, cmap="gray" if img.ndim == 2 else None, interpolation="nearest")
            else:
                ax.imshow(img, cmap="viridis", vmin=lim[0], vmax=lim[1], interpolation="bilinear")
            ax.set_xticks([]), ax.set_yticks([])
            if i == 0:
                ax.set_title(name, fontsize=7)
    handles = [Patch(color=colours[j + 1], label=str(class_names[j])) for j in range(k)]
    ncol = min(k, max(4, cols))  # a narrow (baseline) figure wraps its legend
    fig.legend(handles=handles, loc="lower center", ncol=ncol, fontsize=7, frameon=False)
    if title:  # wrapped to the figure's width (a baseline figure has only three columns)
        import textwrap

        fig.suptitle(textwrap.fill(title, width=max(30, int(fig.get_figwidth() * 13))), fontsize=9)
    fig.tight_layout(rect=(0, 0.25 * legend_rows / fig.get_figheight() + 0.01, 1, 1))
    path = Path(path)
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=90)
    plt.close(fig)
    return path
