"""Chart specs for the report: one small JSON spec per chart, drawn by Plotly in the page and by
matplotlib into a PNG fallback (for papers, and for readers without JavaScript).

Why a spec of our own instead of Plotly figures built in Python: the same few fields (series of
x, y, ± error) give both renderings, and the run-comparison page builds the same specs in the
browser from the runs' curves.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from fmlab.report.aggregate import Cell, primary_metric
from fmlab.report.collect import Row, RunDir, flatten

_RECALL_AT = re.compile(r"(?:^|[_.])(?:r|recall|i2t_r|t2i_r)@?(\d+)$", re.IGNORECASE)
_GROUPS = ("fid/kid", "loss", "monitor", "other")  # the order of a run's charts
# metrics.jsonl keys that are bookkeeping, not curves
_SKIP_CURVE = re.compile(r"^(step|epoch|time|images_per_s|.*img_s|.*ips|.*seconds|.*cpu_s|.*wall_s|world_size|lr.*|wd.*)$")


def spec(chart_id: str, title: str, xlabel: str, ylabel: str, series: list[dict[str, Any]],
         kind: str = "line", xlog: bool = False) -> dict[str, Any]:
    """One chart: ``series`` are ``{"name", "x", "y", "err"}`` (``err`` optional).

    Examples:
        >>> s = spec("c1", "t", "x", "y", [{"name": "a", "x": [1, 2], "y": [0.1, 0.2]}])
        >>> s["id"], s["kind"], len(s["series"])
        ('c1', 'line', 1)
    """
    return {"id": chart_id, "title": title, "xlabel": xlabel, "ylabel": ylabel,
            "series": series, "kind": kind, "xlog": xlog}


def task_charts(cells: list[Cell], task: str, slug: str) -> list[dict[str, Any]]:
    """The plots of one task: accuracy vs shots (adaptation), R@k (retrieval) or a bar per method.

    Args:
        cells: aggregated cells (all tasks; only ``task``'s are used).
        task: the task.
        slug: a file-safe name for chart ids.

    Returns:
        Chart specs.
    """
    mine = [c for c in cells if c.task == task]
    metric = primary_metric(cells, task)
    charts = []
    shots = [c for c in mine if c.metric == metric and isinstance(c.shots, (int, float))
             and not isinstance(c.shots, bool)]
    if shots:
        by: dict[str, list[Cell]] = defaultdict(list)
        for c in sorted(shots, key=lambda c: c.shots):
            by[c.method].append(c)
        charts.append(spec(f"{slug}-shots", f"{metric} vs shots", "shots per class (or labelled examples)",
                           metric, [{"name": m, "x": [c.shots for c in cs], "y": [c.mean for c in cs],
                                     "err": [c.std for c in cs]} for m, cs in by.items()],
                           xlog=all(c.shots > 0 for c in shots)))
    recall = [(c, int(_RECALL_AT.search(c.metric).group(1))) for c in mine if _RECALL_AT.search(c.metric)]
    if recall:
        rk: dict[str, list[tuple[int, Cell]]] = defaultdict(list)
        for c, k in recall:
            rk[f"{c.method} {_RECALL_AT.sub('', c.metric) or 'R'}".strip()].append((k, c))
        charts.append(spec(f"{slug}-rk", "retrieval R@k", "k", "recall",
                           [{"name": n, "x": [k for k, _ in sorted(v, key=lambda t: t[0])],
                             "y": [c.mean for _, c in sorted(v, key=lambda t: t[0])],
                             "err": [c.std for _, c in sorted(v, key=lambda t: t[0])]}
                            for n, v in rk.items()]))
    if not shots:
        bars = [c for c in mine if c.metric == metric]
        charts.append(spec(f"{slug}-bar", f"{metric} per method (mean ± std over seeds)", "method",
                           metric or "", [{"name": metric, "x": [c.method for c in bars],
                                           "y": [c.mean for c in bars],
                                           "err": [c.std for c in bars]}], kind="bar"))
    return charts


def step_charts(rows: list[Row], task: str, slug: str) -> list[dict[str, Any]]:
    """Metrics stored at several training steps (FID/KID during GAN training): one chart per
    metric, one line per method (mean over seeds at each step).

    Examples:
        >>> rows = [Row("gan", "a", "fid", v, seed=0, step=s) for s, v in ((100, 9.0), (200, 5.0))]
        >>> [(c["id"], c["series"][0]["x"], c["series"][0]["y"]) for c in step_charts(rows, "gan", "g")]
        [('g-steps-fid', [100, 200], [9.0, 5.0])]
    """
    by: dict[str, dict[str, dict[int, list[float]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for r in rows:
        if r.task == task and r.step is not None:
            by[r.metric][r.method][r.step].append(r.value)
    charts = []
    for metric, methods in by.items():
        if max(len(steps) for steps in methods.values()) < 2:
            continue
        series = [{"name": m, "x": sorted(steps), "y": [sum(steps[k]) / len(steps[k]) for k in sorted(steps)]}
                  for m, steps in methods.items()]
        charts.append(spec(f"{slug}-steps-{re.sub(r'[^A-Za-z0-9_]+', '_', metric)}",
                           f"{metric} over training steps", "step", metric, series))
    return charts


def curves(run: RunDir) -> dict[str, dict[str, list[float]]]:
    """Every numeric key of a run's ``metrics.jsonl`` as ``{key: {"x": steps, "y": values}}``.

    Examples:
        >>> r = RunDir("r", Path("."), {}, [{"step": 1, "loss": 2.0, "lr": 0.1},
        ...                                 {"step": 2, "loss": 1.5, "eval": {"fid": 9.0}}])
        >>> curves(r)
        {'loss': {'x': [1, 2], 'y': [2.0, 1.5]}, 'eval.fid': {'x': [2], 'y': [9.0]}}
    """
    out: dict[str, dict[str, list[float]]] = {}
    for rec in run.records:
        for key, value in flatten(rec).items():
            leaf = key.rsplit(".", 1)[-1]
            if (isinstance(value, bool) or not isinstance(value, (int, float)) or _SKIP_CURVE.match(leaf)
                    or not math.isfinite(value)):  # a diverged step's NaN is no point on a chart
                continue
            c = out.setdefault(key, {"x": [], "y": []})
            c["x"].append(rec["step"])
            c["y"].append(float(value))
    return out


def curve_group(key: str) -> str:
    """Which chart a curve goes to: ``loss``, ``fid/kid``, ``monitor`` or ``other``.

    Examples:
        >>> [curve_group(k) for k in ("loss", "eval.fid", "monitor.knn_top1", "acc")]
        ['loss', 'fid/kid', 'monitor', 'other']
    """
    low = key.lower()
    if "fid" in low or "kid" in low:
        return "fid/kid"
    if "loss" in low:
        return "loss"
    if low.startswith("monitor") or "knn" in low or "collapse" in low or "rank" in low:
        return "monitor"
    return "other"


def run_charts(run: RunDir, slug: str) -> list[dict[str, Any]]:
    """Loss, monitor and FID/KID curves of one run (one chart per group that has curves)."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for key, c in curves(run).items():
        groups[curve_group(key)].append({"name": key, **c})
    out = []
    for g, series in sorted(groups.items(), key=lambda kv: _GROUPS.index(kv[0])):
        parts = split_by_scale(series)
        for i, part in enumerate(parts):
            suffix = f"-{i + 1}" if len(parts) > 1 else ""
            out.append(spec(f"{slug}-{g.replace('/', '')}{suffix}", f"{run.name}: {g}", "step", g, part))
    return out


def split_by_scale(series: list[dict[str, Any]], ratio: float = 10.0) -> list[list[dict[str, Any]]]:
    """Series grouped so that one chart's largest values differ by at most ``ratio`` (an effective
    rank of 10 would flatten a std ratio of 0.2 on a shared axis).

    Examples:
        >>> s = [{"name": n, "x": [1], "y": [v]} for n, v in (("a", 0.2), ("b", 10.0), ("c", 0.5))]
        >>> [[x["name"] for x in part] for part in split_by_scale(s)]
        [['a', 'c'], ['b']]
    """
    def size(s: dict[str, Any]) -> float:
        return max((abs(v) for v in s["y"]), default=0.0) or 1e-12

    parts: list[list[dict[str, Any]]] = []
    for s in sorted(series, key=size):
        if parts and size(s) <= ratio * size(parts[-1][0]):
            parts[-1].append(s)
        else:
            parts.append([s])
    return parts


def write_png(chart: dict[str, Any], path: Path) -> Path:
    """The matplotlib PNG fallback of a chart spec (Agg canvas, no pyplot state), atomically.

    Args:
        chart: a spec from :func:`spec`.
        path: the PNG to write.

    Returns:
        ``path``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from fmlab.utils.io import atomic_path

    fig = Figure(figsize=(6.4, 4.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for s in chart["series"]:
        if chart["kind"] == "bar":
            ax.bar([str(x) for x in s["x"]], s["y"], yerr=s.get("err"), capsize=3)
            ax.tick_params(axis="x", labelrotation=30, labelsize=7)
        else:
            ax.errorbar(s["x"], s["y"], yerr=s.get("err"), marker="o" if len(s["x"]) < 30 else None,
                        markersize=3, capsize=2, label=str(s["name"]))
    if chart["xlog"]:
        ticks = sorted({x for s in chart["series"] for x in s["x"]})
        ax.set_xscale("log", base=2)
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.minorticks_off()
    ax.set(title=chart["title"], xlabel=chart["xlabel"], ylabel=chart["ylabel"])
    ax.grid(alpha=0.3)
    if chart["kind"] != "bar" and len(chart["series"]) > 1:
        ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path
