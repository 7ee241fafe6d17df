"""``fmlab data preview``: a PNG grid of samples with their boxes, masks and captions.

For a synthetic split every sample is drawn as a pair: the image with its boxes (and label names),
and beside it the instance mask (one colour per object); the caption is the title. Any other
source is drawn as images titled with their class names. Video samples (B, T, H, W, C) are shown
as their frames side by side.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import numpy as np

from fmlab.utils.validation import check, positive_int


def _samples(split, n: int) -> dict:
    """What to draw of the first ``n`` samples: images plus any boxes/masks/captions/labels."""
    idx = np.arange(min(n, len(split)))
    if hasattr(split, "render"):
        out = dict(split.render(idx))
    else:
        out = {"images": split.get_batch(idx)}
        if split.labels is not None and split.class_names is not None:
            out["captions"] = [split.class_names[int(y)] for y in split.labels[idx]]
    if "frames" in out:  # a video (B, T, S, S[, 3]): its frames side by side, boxes frame by frame
        return _tile_frames(out)
    return out


def _tile_frames(out: dict) -> dict:
    """A video sample as one wide image: frame t at x offset t*S, its per-frame boxes moved along."""
    clips = np.asarray(out["frames"])
    b, t, s = clips.shape[:3]
    tiled = dict(out)
    tiled["images"] = np.concatenate([clips[:, k] for k in range(t)], axis=2)
    if "boxes" in out:  # (B, K, T, 4) -> (B, K*T, 4), x shifted by the frame's offset
        boxes = np.asarray(out["boxes"], dtype=np.float32).copy()
        shift = (np.arange(t, dtype=np.float32) * s)[None, None, :]
        present = boxes[..., 0] >= 0
        boxes[..., 0] = np.where(present, boxes[..., 0] + shift, -1)
        boxes[..., 2] = np.where(present, boxes[..., 2] + shift, -1)
        tiled["boxes"] = boxes.reshape(b, -1, 4)
        if "labels" in out:
            tiled["labels"] = np.repeat(np.asarray(out["labels"]), t, axis=1)
    return tiled


def _draw_boxes(ax, boxes: np.ndarray, labels: np.ndarray | None, class_names: list[str] | None) -> None:
    import matplotlib.patches as mpatches

    for k, box in enumerate(boxes):
        if box[0] < 0:
            continue
        x1, y1, x2, y2 = (float(v) for v in box)
        ax.add_patch(mpatches.Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False,
                                        edgecolor="lime", linewidth=1.0))
        if labels is not None and labels[k] >= 0:
            name = class_names[labels[k]] if class_names else str(int(labels[k]))
            ax.text(x1, y1 - 1, f"{k + 1}:{name}", color="lime", fontsize=6, va="bottom")


def _draw_grid(data: dict, names: list[str] | None, cols: int):
    """The matplotlib figure: per sample the image with its boxes, the mask beside it, the caption."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    has_mask = "masks" in data and np.asarray(data["masks"]).ndim == 3
    per = 2 if has_mask else 1
    mask_cmap = ListedColormap(["black", *plt.get_cmap("tab10").colors[1:], "white"])
    m = len(data["images"])
    cols = max(1, min(cols, m))
    rows = -(-m // cols)
    fig, axes = plt.subplots(rows, cols * per, figsize=(2.2 * cols * per, 2.6 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i in range(m):
        ax = axes[i // cols, (i % cols) * per]
        img = data["images"][i]
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=255, interpolation="nearest")
        if "boxes" in data:
            _draw_boxes(ax, np.asarray(data["boxes"][i]), data.get("labels", [None] * m)[i], names)
        if has_mask:
            axes[i // cols, (i % cols) * per + 1].imshow(data["masks"][i], cmap=mask_cmap, vmin=0, vmax=10,
                                                         interpolation="nearest")
        if data.get("captions"):
            ax.set_title("\n".join(textwrap.wrap(str(data["captions"][i]), 34 * per)), fontsize=6.5,
                         loc="left")
    return fig


def preview_grid(spec: str, out: str | os.PathLike, split: str = "test", n: int = 16,
                 data_root_dir: str | os.PathLike | None = None, cols: int = 4) -> Path:
    """Write a PNG grid of the first ``n`` samples of ``spec``'s ``split`` (atomic write).

    Args:
        spec: any source spec (``canvas?size=64``, ``mnist``, ``npz:PATH``).
        out: the PNG to write (must end in ``.png``).
        split: which split.
        n: samples drawn (1..256).
        data_root_dir: the data root for named sources.
        cols: samples per row.

    Returns:
        The path written.

    Examples:
        >>> import tempfile, os
        >>> p = preview_grid("canvas?objects=cifar10_demo&size=32&n_test=2", os.path.join(tempfile.mkdtemp(), "g.png"), n=2)
        >>> p.suffix, p.stat().st_size > 0
        ('.png', True)
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fmlab.data import open_source
    from fmlab.utils.io import atomic_path

    n = positive_int("--n", n)
    check(n <= 256, "--n", n, "must be <= 256")
    check(str(out).lower().endswith(".png"), "--out", str(out), "must be a .png file")
    source = open_source(spec, data_root_dir)
    sp = source.split(split)
    data = _samples(sp, n)
    fig = _draw_grid(data, getattr(sp, "class_names", None), cols)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return Path(out)
