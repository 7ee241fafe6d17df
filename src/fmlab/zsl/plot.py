"""PCA picture of real vs synthetic unseen-class features (the check that G extrapolates).

Both sets live in the generator's (min-max scaled) space; the 2-D PCA is fitted on the real
unseen test features, so the synthetic clouds are shown in the real data's own axes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def plot_real_vs_synthetic(model, X_test: torch.Tensor, y_test: np.ndarray, unseen: list[int],
                           class_names: list[str], out: str | Path, per_class: int = 300) -> None:
    """Scatter real unseen test features (dots) and synthetic ones (crosses) per unseen class.

    Args:
        model: a fitted :class:`~fmlab.zsl.estimator.GenerativeZSL` (``synthetic_`` class-major).
        X_test, y_test: test features and their global labels.
        unseen: the unseen classes' global indices.
        class_names: all class names.
        out: the PNG path.
        per_class: points drawn per class and kind.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from fmlab.utils.io import atomic_path

    mask = np.isin(y_test, unseen)
    real = model._scale(X_test[torch.from_numpy(mask)]).numpy()
    real_y = y_test[mask]
    fake = model.synthetic_.numpy()
    fake_y = np.repeat(unseen, len(fake) // len(unseen))
    mean = real.mean(0)
    _, _, vt = np.linalg.svd(real - mean, full_matrices=False)
    proj = vt[:2].T
    fig = Figure(figsize=(6, 5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(111)
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]
    for i, c in enumerate(unseen):
        col = colors[i % len(colors)]
        r = (real[real_y == c][:per_class] - mean) @ proj
        f = (fake[fake_y == c][:per_class] - mean) @ proj
        ax.scatter(r[:, 0], r[:, 1], s=6, c=col, alpha=0.5, label=f"{class_names[c]} real")
        ax.scatter(f[:, 0], f[:, 1], s=10, c=col, marker="x", alpha=0.7,
                   label=f"{class_names[c]} synthetic")
    ax.set_xlabel("PC 1 (of real unseen test features)")
    ax.set_ylabel("PC 2")
    ax.set_title("Unseen classes: real test vs generated features")
    ax.legend(fontsize=7, markerscale=2)
    fig.tight_layout()
    with atomic_path(Path(out)) as tmp:
        fig.savefig(tmp, format="png")
