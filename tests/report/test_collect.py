"""Collection and aggregation (mean ± std over seeds, best per task), bad input, atomic output."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest

from fmlab.cli.main import main
from fmlab.errors import DataError, FmlabError
from fmlab.report import build_report
from fmlab.report.aggregate import aggregate, best_per_task
from fmlab.report.collect import read_results_json, read_store, scan_runs

from .conftest import ACC, FID, RK


def test_mean_std_over_seeds_and_best_per_task(report_inputs):
    db, _ = report_inputs
    rows = read_store(db)
    assert len(rows) == sum(len(v) for v in ACC.values()) + sum(len(v) for v in FID.values()) + 6
    cells = {(c.task, c.method, c.shots): c for c in aggregate(rows)}
    for (m, k), vals in ACC.items():
        c = cells[("adapt", m, k)]
        assert c.n == 3 and c.seeds == [1, 2, 3]
        assert c.mean == pytest.approx(np.mean(vals)) and c.std == pytest.approx(np.std(vals, ddof=1))
        assert c.protocol["split_hash"] == "abc123" and c.protocol["source"] == "cifar10:test"
    best = best_per_task(aggregate(rows))
    # adaptation: best at the largest shot count (linear wins at 4 shots though ncm wins at 1)
    assert (best["adapt"].method, best["adapt"].shots) == ("linear", 4)
    assert best["gan"].method == "ns"  # FID: lower is better


def test_retrieval_recall_at_k_chart(report_inputs):
    from fmlab.report.charts import task_charts

    cells = aggregate(read_store(report_inputs[0]))
    rk = next(c for c in task_charts(cells, "clip_retrieval", "r") if c["id"] == "r-rk")
    assert {s["name"]: (s["x"], s["y"]) for s in rk["series"]} == {
        f"clip_retrieval {d}": ([1, 5, 10], v) for d, v in RK.items()}


def test_results_json_and_run_folders(tmp_path, report_inputs):
    _, runs = report_inputs
    (runs / "sweep").mkdir()
    (runs / "sweep" / "results.json").write_text(json.dumps([
        {"objective": "mae", "seed": s, "cpu_min": 3.0, "pretrained": {"linear": v}, "command": "fmlab x"}
        for s, v in ((1, 0.4), (2, 0.5))]))
    rows, run_dirs = scan_runs(runs)
    assert [(r.task, r.method, r.metric, r.value) for r in rows] == [
        ("sweep", "mae", "pretrained.linear", 0.4), ("sweep", "mae", "pretrained.linear", 0.5)]
    assert rows[0].protocol["command"] == "fmlab x"  # cpu_min is a cost, not a result
    assert [d.name for d in run_dirs] == ["gan_a", "gan_b"]
    a = run_dirs[0]
    assert len(a.records) == 20 and a.records[-1]["step"] == 20  # the cut line is skipped
    assert a.samples.name == "step_000020.png" and a.config["optim"]["lr"] == 0.1
    with pytest.raises(DataError, match="not a JSON results file"):
        (tmp_path / "bad.json").write_text("{")
        read_results_json(tmp_path / "bad.json", "t")


def test_site_contents(tmp_path, report_inputs):
    db, runs = report_inputs
    index = build_report(tmp_path / "site", dbs=[db], runs=[runs])
    site = index.parent
    names = {p.name for p in site.iterdir()}
    assert {"index.html", "runs.html", "task_adapt.html", "task_gan.html", "assets", "png"} <= names
    js = (site / "assets" / "plotly.min.js").read_text()
    assert len(js) > 1_000_000 and "cdn" not in (site / "index.html").read_text().lower()
    pngs = sorted(p.name for p in (site / "png").iterdir())
    # FID (~5) and KID (~0.01) differ by more than 10x: two charts, one per scale
    assert pngs == ["adapt-shots.png", "clip_retrieval-bar.png", "clip_retrieval-rk.png", "gan-bar.png",
                    "run0-fidkid-1.png", "run0-fidkid-2.png",
                    "run0-loss.png", "run1-fidkid-1.png", "run1-fidkid-2.png", "run1-loss.png"]
    assert all((site / "png" / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    html = (site / "index.html").read_text()
    assert "linear @ 4 shots: accuracy" in html and "ns: fid ↓ 23 ± 4.243" in html


def test_bad_stores_one_error_exit_2_nothing_written(tmp_path, capsys, report_inputs):
    db, _ = report_inputs
    text = tmp_path / "notes.db"
    text.write_text("not sqlite at all " * 100)
    newer = tmp_path / "newer.db"
    newer.write_bytes(db.read_bytes())
    with sqlite3.connect(newer) as con:
        con.execute("PRAGMA user_version = 99")
    out = tmp_path / "site"
    for bad, why in ((text, "not a usable results database"), (newer, "schema version 99 is newer"),
                     (tmp_path / "missing.db", "not found")):
        assert main(["report", "--db", str(db), "--db", str(bad), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str(bad) in err and why in err and "Traceback" not in err
        assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".site")]


def test_out_replaced_atomically_and_foreign_folder_refused(tmp_path, report_inputs):
    db, _ = report_inputs
    out = tmp_path / "site"
    build_report(out, dbs=[db])
    before = (out / "index.html").read_text()
    with pytest.raises(DataError):
        build_report(out, dbs=[db, tmp_path / "missing.db"])
    assert (out / "index.html").read_text() == before  # a failed build leaves the old report
    build_report(out, dbs=[db])  # an earlier report is replaced
    other = tmp_path / "mine"
    other.mkdir()
    (other / "thesis.tex").write_text("x")
    with pytest.raises(FmlabError, match="not an fmlab report"):
        build_report(other, dbs=[db])
    with pytest.raises(FmlabError, match="--db"):
        build_report(tmp_path / "x")


def test_values_are_escaped_and_nan_dropped(tmp_path):
    from fmlab.results import ResultsStore

    db = tmp_path / "r.db"
    evil = "</script><script>alert(1)</script>"
    ResultsStore(db).append([{"run_id": "r", "task": "t", "method": evil, "metric": "acc", "value": v, "seed": s}
                             for s, v in ((1, 0.5), (2, float("nan")))])
    assert [r.value for r in read_store(db)] == [0.5]  # a NaN row is no result
    site = build_report(tmp_path / "site", dbs=[db], png=False).parent
    for page in ("index.html", "task_t.html"):
        text = (site / page).read_text()
        assert "<script>alert" not in text and "&lt;/script&gt;" in text


def test_evaluations_during_training_fid_over_steps(tmp_path):
    from fmlab.report.charts import step_charts
    from fmlab.results import ResultsStore

    db = tmp_path / "r.db"
    fid = {0: {100: 90.0, 200: 50.0, 300: 30.0}, 1: {100: 80.0, 200: 60.0, 300: 34.0}}
    ResultsStore(db).append([{"run_id": f"run{seed}", "task": "gan", "method": "hinge", "seed": seed,
                              "metric": "fid", "value": v, "extra": {"step": step}}
                             for seed, steps in fid.items() for step, v in steps.items()])
    rows = read_store(db)
    (cell,) = aggregate(rows)  # the run's result is its last evaluation, not a mean over steps
    assert (cell.n, cell.seeds, cell.mean) == (2, [0, 1], 32.0)
    (chart,) = step_charts(rows, "gan", "g")
    assert chart["series"] == [{"name": "hinge", "x": [100, 200, 300], "y": [85.0, 55.0, 32.0]}]
