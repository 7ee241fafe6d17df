"""Entry-count plot: how balancing flattens the head of the entry distribution."""

from __future__ import annotations

import os

import numpy as np

from fmlab.utils.io import atomic_path


def plot_entry_counts(
    before: np.ndarray,
    after: np.ndarray,
    threshold: float,
    path: str | os.PathLike,
    title: str = "MetaCLIP balancing",
) -> None:
    """Rank-frequency curves of the entry counts before and after, both axes log scale.

    Each curve is sorted on its own (the usual MetaCLIP picture): balancing cuts the head down to
    about ``t`` and leaves the tail where it was, so the curve after is flat up to rank ~#head.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for counts, label, style in ((before, "before", dict(color="tab:blue", lw=2.0)),
                                 (after, "after", dict(color="tab:orange", lw=1.5, ls="-"))):
        c = np.sort(np.asarray(counts))[::-1]
        c = c[c > 0]
        if len(c):
            ax.plot(np.arange(1, len(c) + 1), c, label=f"{label}: {int(c.sum()):,} matches, "
                    f"{len(c):,} entries", **style)
    if ax.lines:
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.axhline(threshold, color="k", ls="--", lw=1, label=f"t = {threshold:g}")
    ax.set_xlabel("entry rank (by count)")
    ax.set_ylabel("pairs matching the entry")
    ax.set_title(f"{title}: {int((before > 0).sum()):,} matched entries")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
