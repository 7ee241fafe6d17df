"""Tables and pictures of a text study's arms: mean ± std over seeds of one metric, per arm and
task (``DIR/report.md`` and ``DIR/*.png`` of ``fmlab study domain|uda|pseudolabel|entigraph``)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fmlab.report.aggregate import mean_std
from fmlab.utils.io import atomic_path

__all__ = ["arm_cells", "arm_table", "plot_arm_bars"]


def arm_cells(records: Sequence[dict[str, Any]], metric: str, arm: str = "arm_name",
              task: str = "task") -> dict[tuple[str, str], list[float]]:
    """Per (arm, task): the metric of every seed, in record order.

    Examples:
        >>> recs = [{"arm_name": "a", "task": "t", "accuracy": v} for v in (0.5, 0.7)]
        >>> arm_cells(recs, "accuracy")
        {('a', 't'): [0.5, 0.7]}
    """
    cells: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in records:
        cells[(str(r[arm]), str(r[task]))].append(float(r[metric]))
    return dict(cells)


def arm_table(records: Sequence[dict[str, Any]], metric: str, arm: str = "arm_name",
              task: str = "task", scale: float = 100.0, digits: int = 1) -> str:
    """A markdown table: one row per arm, one column per task, ``mean ± std (n)`` of ``metric``
    (× ``scale``), the best mean of each column in bold.

    Examples:
        >>> recs = [{"arm_name": a, "task": "t", "accuracy": v}
        ...         for a, v in [("a", 0.5), ("a", 0.7), ("b", 0.9)]]
        >>> print(arm_table(recs, "accuracy"))
        | arm | t |
        |---|---|
        | a | 60.0 ± 14.1 (2) |
        | b | **90.0 ± 0.0 (1)** |
    """
    cells = arm_cells(records, metric, arm, task)
    arms = list(dict.fromkeys(a for a, _ in cells))
    tasks = list(dict.fromkeys(t for _, t in cells))
    best = {t: max(mean_std(v)[0] for (a, tt), v in cells.items() if tt == t) for t in tasks}
    lines = ["| arm | " + " | ".join(tasks) + " |", "|---" * (len(tasks) + 1) + "|"]
    for a in arms:
        row = []
        for t in tasks:
            if (a, t) not in cells:
                row.append("–")
                continue
            mu, sd = mean_std(cells[(a, t)])
            text = f"{scale * mu:.{digits}f} ± {scale * sd:.{digits}f} ({len(cells[(a, t)])})"
            row.append(f"**{text}**" if mu == best[t] else text)
        lines.append(f"| {a} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def plot_arm_bars(records: Sequence[dict[str, Any]], metric: str, path: str | Path, *,
                  title: str, arm: str = "arm_name", task: str = "task",
                  ylabel: str | None = None, scale: float = 100.0,
                  ylim: tuple[float, float] | None = None, legend_loc: str = "lower right") -> Path:
    """Grouped bars (one group per task, one bar per arm) of the seed mean with ±1 std error bars,
    the seeds drawn as dots; written atomically. ``ylim``/``legend_loc``: keep small differences
    visible and the legend off the bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    cells = arm_cells(records, metric, arm, task)
    arms = list(dict.fromkeys(a for a, _ in cells))
    tasks = list(dict.fromkeys(t for _, t in cells))
    width = 0.8 / max(len(arms), 1)
    fig, ax = plt.subplots(figsize=(max(4.5, 1.6 * len(tasks) + 1.5), 3.6))
    for i, a in enumerate(arms):
        xs = np.arange(len(tasks)) + (i - (len(arms) - 1) / 2) * width
        vals = [[scale * v for v in cells.get((a, t), [])] for t in tasks]
        mus = [np.mean(v) if v else np.nan for v in vals]
        sds = [np.std(v, ddof=1) if len(v) > 1 else 0.0 for v in vals]
        ax.bar(xs, mus, width * 0.95, yerr=sds, capsize=3, label=a, alpha=0.85)
        for x, v in zip(xs, vals):
            ax.plot([x] * len(v), v, "k.", ms=3)
    ax.set_xticks(np.arange(len(tasks)), tasks)
    ax.set_ylabel(ylabel or metric)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc=legend_loc)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path
