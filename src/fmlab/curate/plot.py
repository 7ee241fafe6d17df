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
    """Counts per entry, entries ranked by their count before balancing, both axes log scale.

    Ranking by the *before* counts keeps each entry at one x position, so the picture shows the
    head being cut down to about ``t`` while the tail stays where it was.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    before = np.asarray(before)
    after = np.asarray(after)
    order = np.argsort(-before, kind="stable")
    order = order[before[order] > 0]
    rank = np.arange(1, len(order) + 1)
    fig = Figure(figsize=(7, 4.5), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    if len(order):
        b, a = before[order], after[order]
        ax.plot(rank, b, color="tab:blue", lw=1.5, label=f"before ({int(before.sum()):,} matches)")
        shown = a > 0
        ax.scatter(
            rank[shown],
            a[shown],
            s=3,
            color="tab:orange",
            alpha=0.6,
            linewidths=0,
            label=f"after ({int(after.sum()):,} matches)",
        )
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.axhline(threshold, color="k", ls="--", lw=1, label=f"t = {threshold:g}")
    ax.set_xlabel("entry rank (by count before balancing)")
    ax.set_ylabel("pairs matching the entry")
    ax.set_title(f"{title}: {int((before > 0).sum()):,} matched entries")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
