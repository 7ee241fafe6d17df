"""Build the report site: collect, aggregate, draw, write to a temporary folder, move into place.

Why a temporary folder: a report that fails half-way (a bad store, a full disk) must leave the
previous report, or nothing, at ``--out`` — never a half-written site.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from importlib.resources import files
from pathlib import Path

import yaml

from fmlab.errors import FmlabError
from fmlab.report import charts as ch
from fmlab.report import pages
from fmlab.report.aggregate import aggregate, best_per_task
from fmlab.report.collect import Row, RunDir, flatten, read_store, scan_runs

MARKER = ".fmlab-report"  # an --out folder holding it is a report we may replace


def slugify(name: str, taken: set[str]) -> str:
    """A file-safe, unique name for a task or run.

    Examples:
        >>> taken = set()
        >>> slugify("dense/clip", taken), slugify("dense clip", taken)
        ('dense_clip', 'dense_clip_2')
    """
    base = re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_") or "x"
    slug, i = base, 2
    while slug in taken:
        slug, i = f"{base}_{i}", i + 1
    taken.add(slug)
    return slug


def require_plotly() -> None:
    """Fail early, naming the extra, when Plotly (whose JavaScript the site bundles) is missing."""
    try:
        import plotly  # noqa: F401
    except ImportError:
        raise FmlabError("fmlab report needs the plotly package, which is not installed; install "
                         "the extra: pip install -e '.[report]'") from None


def collect(dbs: Iterable[str | os.PathLike] = (), runs: Iterable[str | os.PathLike] = ()
            ) -> tuple[list[Row], list[RunDir]]:
    """Rows of every store and ``results.json``, and every run folder, in argument order."""
    rows: list[Row] = []
    run_dirs: list[RunDir] = []
    for db in dbs:
        rows += read_store(db)
    for root in runs:
        r, d = scan_runs(root)
        rows += r
        run_dirs += d
    return rows, run_dirs


def build_report(out: str | os.PathLike, dbs: Iterable[str | os.PathLike] = (),
                 runs: Iterable[str | os.PathLike] = (), png: bool = True) -> Path:
    """Write the site to ``out`` (``index.html``, ``task_*.html``, ``runs.html``, ``assets/``, ``png/``).

    Args:
        out: the report folder; replaced when it holds an earlier report, refused when it is a
            non-empty folder of something else.
        dbs: SQLite results stores.
        runs: folders scanned for ``results.json`` files and run folders (``metrics.jsonl``).
        png: also write a matplotlib PNG per chart.

    Returns:
        The path of ``index.html``.

    Raises:
        fmlab.errors.FmlabError: no input given, a bad store (naming its file), or ``out`` is a
            folder that is not a report.
    """
    dbs, runs = list(dbs), list(runs)
    if not dbs and not runs:
        raise FmlabError("report: give at least one --db STORE or --runs DIR")
    require_plotly()
    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MARKER).exists())):
        raise FmlabError(f"--out {out}: exists and is not an fmlab report; choose a new folder")
    rows, run_dirs = collect(dbs, runs)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp's 0700 would make the site private to its writer
    try:
        _write_site(tmp, rows, run_dirs, png)
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out / "index.html"


def _write_site(root: Path, rows: list[Row], run_dirs: list[RunDir], png: bool) -> None:
    from plotly.offline import get_plotlyjs

    (root / "assets").mkdir()
    (root / "png").mkdir()
    (root / "assets" / "plotly.min.js").write_text(get_plotlyjs(), encoding="utf-8")
    static = files("fmlab.report") / "static"
    for name in ("report.js", "report.css"):
        (root / "assets" / name).write_text((static / name).read_text(encoding="utf-8"), encoding="utf-8")
    cells = aggregate(rows)
    best = best_per_task(cells)
    taken: set[str] = set()
    slugs = {t: slugify(t, taken) for t in dict.fromkeys(c.task for c in cells)}
    n_runs = {t: len({r.run_id for r in rows if r.task == t}) for t in slugs}
    all_charts = []
    for task, slug in slugs.items():
        specs = ch.step_charts(rows, task, slug) + ch.task_charts(cells, task, slug)
        all_charts += specs
        _write(root / f"task_{slug}.html", pages.page(task, pages.task_body(task, cells, specs), specs))
    runs_view, runs_data, run_specs = [], {}, []
    for i, run in enumerate(run_dirs):
        specs = ch.run_charts(run, f"run{i}")
        run_specs += specs
        grid = None
        if run.samples is not None:
            grid = f"assets/grid_{i}.png"
            shutil.copyfile(run.samples, root / grid)
        runs_view.append({"name": run.name, "charts": specs, "grid": grid,
                          "config_yaml": yaml.safe_dump(run.config, sort_keys=False)})
        runs_data[run.name] = {"config": flatten(run.config), "curves": ch.curves(run)}
    all_charts += run_specs
    _write(root / "runs.html", pages.page("Training runs", pages.runs_body(runs_view), run_specs, runs_data))
    _write(root / "index.html", pages.page("fmlab report", pages.index_body(
        cells, best, slugs, n_runs, [r.name for r in run_dirs])))
    if png:
        for spec in all_charts:
            ch.write_png(spec, root / "png" / f"{spec['id']}.png")
    (root / MARKER).write_text("written by fmlab report\n", encoding="utf-8")


def _write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def _replace_dir(new: Path, out: Path) -> None:
    """Move the finished site ``new`` to ``out``; an earlier report there is removed after."""
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old."))
        os.replace(out, old / "site")
    os.replace(new, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
