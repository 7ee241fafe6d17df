"""The report's HTML pages, built with plain string templates and :func:`html.escape`.

Why no template engine: four small pages, every value escaped in one helper (:func:`esc`); the
data the scripts need (chart specs, run curves) go in as JSON inside ``<script>`` blocks.
"""

from __future__ import annotations

import html
import json
from collections import defaultdict
from typing import Any

from fmlab.report.aggregate import Cell, lower_is_better, primary_metric

PROTOCOL_KEYS = ("backbone", "weights_hash", "source", "split_hash", "seeds", "command")


def esc(value: Any) -> str:
    """HTML-escaped text of ``value`` (None: empty).

    Examples:
        >>> esc("<b>&")
        '&lt;b&gt;&amp;'
    """
    return "" if value is None else html.escape(str(value))


def script_json(name: str, obj: Any) -> str:
    """``<script>window.NAME = ...</script>`` with every ``<`` written ``\\u003c``, so no value can
    end the block or open an HTML comment in it.

    Examples:
        >>> script_json("X", {"a": "</script>"})
        '<script>window.X = {"a": "\\\\u003c/script>"};</script>'
    """
    text = json.dumps(obj, allow_nan=False, default=str).replace("<", "\\u003c")
    return f"<script>window.{name} = {text};</script>"


def page(title: str, body: str, charts: list[dict[str, Any]] = (), runs: dict[str, Any] | None = None) -> str:
    """A full page: the shared CSS/JS, Plotly from ``assets/``, the charts' specs, ``body``."""
    data = script_json("FMLAB_CHARTS", list(charts))
    if runs is not None:
        data += script_json("FMLAB_RUNS", runs)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(title)} · fmlab report</title>
<link rel="icon" href="data:,"><link rel="stylesheet" href="assets/report.css">
<script src="assets/plotly.min.js"></script><script src="assets/report.js"></script>{data}
</head><body>
<nav><a href="index.html">overview</a><a href="runs.html">training runs &amp; comparison</a></nav>
<h1>{esc(title)}</h1>
{body}
</body></html>
"""


def fmt(v: float) -> str:
    """A number for a table cell (4 significant digits).

    Examples:
        >>> fmt(0.123456), fmt(1234.5678)
        ('0.1235', '1235')
    """
    return f"{v:.4g}"


def protocol_block(cells: list[Cell]) -> str:
    """The protocol of a set of cells (every distinct value per key) in a ``<details>``."""
    facts: dict[str, set[str]] = defaultdict(set)
    for c in cells:
        for k in PROTOCOL_KEYS:
            if k == "seeds":
                facts[k].update(str(s) for s in c.seeds)
            elif c.protocol.get(k) not in (None, ""):
                facts[k].add(str(c.protocol[k]))
    items = "".join(f"<tr><th>{esc(k)}</th><td><code>{'<br>'.join(esc(v) for v in sorted(facts[k]))}"
                    f"</code></td></tr>" for k in PROTOCOL_KEYS if facts[k])
    return f"<details><summary>protocol</summary><table>{items or '<tr><td>not recorded</td></tr>'}</table></details>"


def index_body(cells: list[Cell], best: dict[str, Cell], slugs: dict[str, str], n_runs: dict[str, int],
               run_names: list[str]) -> str:
    """The overview: one row per task (runs, methods, best result, protocol one click away)."""
    rows = []
    for task, slug in slugs.items():
        mine = [c for c in cells if c.task == task]
        b = best.get(task)
        arrow = "↓" if b and lower_is_better(b.metric) else "↑"
        best_txt = (f"{esc(b.method)}{f' @ {esc(b.shots)} shots' if b.shots is not None else ''}: "
                    f"{esc(b.metric)} {arrow} {fmt(b.mean)} ± {fmt(b.std)} (n={b.n})") if b else ""
        rows.append(f"<tr><td><a href='task_{slug}.html'>{esc(task)}</a></td>"
                    f"<td class='num' data-sort='{n_runs[task]}'>{n_runs[task]}</td>"
                    f"<td class='num'>{len({c.method for c in mine})}</td><td>{best_txt}</td>"
                    f"<td>{protocol_block([c for c in mine if c.metric == primary_metric(cells, task)])}</td></tr>")
    runs = "".join(f"<li><a href='runs.html#run-{i}'>{esc(n)}</a></li>" for i, n in enumerate(run_names))
    return (f"<p class='note'>{len(slugs)} tasks, {len(run_names)} training runs. Click a header to "
            "sort, type to filter.</p><input class='filter' data-table='tasks' placeholder='filter tasks'>"
            "<table id='tasks' class='sortable'><thead><tr><th>task</th><th>runs</th><th>methods</th>"
            f"<th>best (primary metric, mean ± std over seeds)</th><th>protocol</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>"
            f"<h2>Training runs</h2><ul>{runs or '<li>none</li>'}</ul>")


def task_body(task: str, cells: list[Cell], charts: list[dict[str, Any]]) -> str:
    """One task: its filterable, sortable comparison table, its charts with their PNGs."""
    mine = [c for c in cells if c.task == task]
    rows = "".join(
        f"<tr><td>{esc(c.method)}</td><td class='num'>{esc(c.shots)}</td><td>{esc(c.metric)}</td>"
        f"<td class='num' data-sort='{c.mean!r}'>{fmt(c.mean)}</td><td class='num' data-sort='{c.std!r}'>"
        f"{fmt(c.std)}</td><td class='num'>{c.n}</td><td>{esc(', '.join(map(str, c.seeds)))}</td></tr>"
        for c in mine)
    plots = "".join(f"<div class='chart' id='{esc(s['id'])}'></div><p class='png'><a href='png/{esc(s['id'])}.png'>"
                    f"PNG</a></p>" for s in charts)
    return (f"{protocol_block(mine)}<h2>Plots</h2>{plots}<h2>Comparison</h2><input class='filter' "
            "data-table='results' placeholder='filter rows'><table id='results' class='sortable'><thead><tr>"
            "<th>method</th><th>shots</th><th>metric</th><th>mean</th><th>std</th><th>n</th><th>seeds</th>"
            f"</tr></thead><tbody>{rows}</tbody></table>")


def runs_body(runs: list[dict[str, Any]]) -> str:
    """Every training run (curves, latest sample grid, config) and the comparison picker.

    Args:
        runs: ``{"name", "charts", "grid" (relative path or None), "config_yaml"}`` per run.
    """
    parts = ["<h2>Compare runs</h2><p class='note'>Tick two or more runs: their configs are diffed "
             "and their curves overlaid.</p><ul>"]
    parts += [f"<li><label><input type='checkbox' class='pick' value='{esc(r['name'])}'> {esc(r['name'])}"
              "</label></li>" for r in runs]
    parts.append("</ul><button id='compare-button'>compare</button><div id='compare-out'></div>")
    for i, r in enumerate(runs):
        plots = "".join(f"<div class='chart' id='{esc(s['id'])}'></div><p class='png'>"
                        f"<a href='png/{esc(s['id'])}.png'>PNG</a></p>" for s in r["charts"])
        grid = (f"<p id='grid-{i}'>latest sample grid:<br><img class='grid' src='{esc(r['grid'])}' "
                "alt='samples'></p>" if r["grid"] else "")
        parts.append(f"<h2 id='run-{i}'>{esc(r['name'])}</h2>{grid}{plots}<details><summary>config."
                     f"yaml</summary><pre>{esc(r['config_yaml'])}</pre></details>")
    if not runs:
        parts.append("<p>No run folders (with a <code>metrics.jsonl</code>) were given.</p>")
    return "".join(parts)
