"""Aggregate result rows: mean ± std over seeds per (method, shots, metric), and the best per task.

The std is the sample std (ddof=1, as in ``fmlab adapt``'s summary), 0 for a single seed.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from fmlab.report.collect import Row

# metric names where a smaller value is better (FID, KID, losses, errors)
_LOWER = ("fid", "kid", "loss", "error", "err", "distance", "ppl")
_PRIMARY = re.compile(r"(acc|top1|miou|(^|[._])ap($|_)|knn|linear|recall|r@|(^|[._])fid$)", re.IGNORECASE)


@dataclass
class Cell:
    """One (task, method, shots, metric) over its seeds."""

    task: str
    method: str
    shots: Any
    metric: str
    mean: float
    std: float
    n: int
    seeds: list[Any] = field(default_factory=list)
    protocol: dict[str, Any] = field(default_factory=dict)


def lower_is_better(metric: str) -> bool:
    """Whether a smaller ``metric`` is better (judged from its name).

    Examples:
        >>> lower_is_better("fid"), lower_is_better("kid_mean"), lower_is_better("accuracy")
        (True, True, False)
    """
    name = metric.lower().rsplit(".", 1)[-1]
    return any(name == w or name.startswith(w + "_") or name.endswith("_" + w) for w in _LOWER)


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample std (ddof=1; 0 for one value).

    Examples:
        >>> mean_std([1.0, 2.0, 3.0])
        (2.0, 1.0)
        >>> mean_std([0.5])
        (0.5, 0.0)
    """
    mu = sum(values) / len(values)
    if len(values) < 2:
        return mu, 0.0
    return mu, math.sqrt(sum((v - mu) ** 2 for v in values) / (len(values) - 1))


def aggregate(rows: list[Row]) -> list[Cell]:
    """Group rows by (task, method, shots, metric) and average over seeds.

    Args:
        rows: the collected rows.

    Returns:
        One :class:`Cell` per group, in first-seen order.

    Examples:
        >>> rows = [Row("t", "a", "acc", v, seed=s) for s, v in ((1, 0.4), (2, 0.6))]
        >>> c = aggregate(rows)[0]
        >>> (c.method, round(c.mean, 3), round(c.std, 4), c.n, c.seeds)
        ('a', 0.5, 0.1414, 2, [1, 2])
    """
    groups: dict[tuple, list[Row]] = defaultdict(list)
    for r in final_rows(rows):
        groups[(r.task, r.method, _key(r.shots), r.metric)].append(r)
    cells = []
    for (task, method, _, metric), members in groups.items():
        mu, sd = mean_std([m.value for m in members])
        seeds = sorted({m.seed for m in members if m.seed is not None})
        cells.append(Cell(task, method, members[0].shots, metric, mu, sd, len(members), seeds,
                          dict(members[0].protocol)))
    return cells


def final_rows(rows: list[Row]) -> list[Row]:
    """Rows without the earlier evaluations of a run: where a run stored a metric at several
    training steps (a GAN's FID every N steps), only its last step counts as the run's result.

    Examples:
        >>> rows = [Row("gan", "a", "fid", v, seed=0, run_id="r", step=s) for s, v in ((100, 9.0), (200, 5.0))]
        >>> [(r.step, r.value) for r in final_rows(rows)]
        [(200, 5.0)]
    """
    last: dict[tuple, int] = {}
    for r in rows:
        if r.step is not None:
            key = (r.task, r.run_id, r.method, r.seed, _key(r.shots), r.metric)
            last[key] = max(last.get(key, r.step), r.step)
    return [r for r in rows if r.step is None
            or r.step == last[(r.task, r.run_id, r.method, r.seed, _key(r.shots), r.metric)]]


def primary_metric(cells: list[Cell], task: str) -> str | None:
    """The metric a task is ranked by: its first accuracy-like metric (accuracy, mIoU, AP, kNN,
    recall, FID), else the first one recorded for it.

    Examples:
        >>> cells = [Cell("t", "m", None, "last_loss", 1, 0, 1), Cell("t", "m", None, "knn", 1, 0, 1)]
        >>> primary_metric(cells, "t")
        'knn'
    """
    names = list(dict.fromkeys(c.metric for c in cells if c.task == task))
    return next((m for m in names if _PRIMARY.search(m)), names[0] if names else None)


def best_per_task(cells: list[Cell]) -> dict[str, Cell]:
    """The best method of each task on its primary metric, at its largest shot count.

    Args:
        cells: from :func:`aggregate`.

    Returns:
        ``{task: best cell}`` (higher mean wins unless :func:`lower_is_better`).

    Examples:
        >>> rows = [Row("gan", "a", "fid", 10.0), Row("gan", "b", "fid", 5.0),
        ...         Row("ad", "x", "acc", 0.9, shots=1), Row("ad", "y", "acc", 0.5, shots=16),
        ...         Row("ad", "x", "acc", 0.4, shots=16)]
        >>> {t: (c.method, c.shots) for t, c in best_per_task(aggregate(rows)).items()}
        {'gan': ('b', None), 'ad': ('y', 16)}
    """
    out: dict[str, Cell] = {}
    for task in dict.fromkeys(c.task for c in cells):
        metric = primary_metric(cells, task)
        pool = [c for c in cells if c.task == task and c.metric == metric]
        numeric = [c for c in pool if isinstance(c.shots, (int, float)) and not isinstance(c.shots, bool)]
        if numeric:
            top = max(c.shots for c in numeric)
            pool = [c for c in numeric if c.shots == top]
        sign = -1.0 if lower_is_better(metric or "") else 1.0
        out[task] = max(pool, key=lambda c: sign * c.mean)
    return out


def _key(shots: Any) -> Any:
    return shots if isinstance(shots, (int, float, str, type(None))) else str(shots)
