import json

import pytest

from fmlab.errors import FmlabError
from fmlab.results import ResultsStore, format_rows


def test_append_query_format(tmp_path):
    db = ResultsStore(tmp_path / "r.db")
    n = db.append([
        {"run_id": "r1", "task": "adapt", "source": "s", "method": "ncm", "seed": 1, "metric": "accuracy",
         "value": 0.5, "hyperparameters": {"k": 3}},
        {"run_id": "r1", "task": "classify", "metric": "accuracy", "value": 0.9},
    ])
    assert n == 2
    rows = db.query(task="adapt")
    assert len(rows) == 1 and json.loads(rows[0]["hyperparameters"]) == {"k": 3}
    assert rows[0]["fmlab_version"] and rows[0]["time"]
    assert "ncm" in format_rows(rows, "table") and "| ncm" in format_rows(rows, "md")
    assert json.loads(format_rows(rows, "json"))[0]["value"] == 0.5
    assert format_rows(rows, "csv").splitlines()[0].startswith("id,run_id")
    with pytest.raises(ValueError, match="unknown result columns"):
        db.append([{"run_id": "x", "task": "t", "metric": "m", "bogus": 1}])


def test_not_a_database(tmp_path):
    p = tmp_path / "x.db"
    p.write_text("this is not sqlite" * 100)
    with pytest.raises(FmlabError, match="not a usable results database"):
        ResultsStore(p)


def test_readonly_store_never_writes(tmp_path):
    """Probe F19: a reader must not turn a 0-byte file into a SQLite file, nor create a missing one."""
    from fmlab.errors import DataError

    zero = tmp_path / "zero.db"
    zero.write_bytes(b"")
    with pytest.raises(DataError, match="no 'results' table; the file is empty"):
        ResultsStore(zero, readonly=True)
    assert zero.stat().st_size == 0
    with pytest.raises(DataError, match="results database not found"):
        ResultsStore(tmp_path / "missing.db", readonly=True)
    assert not (tmp_path / "missing.db").exists()
    db = tmp_path / "r.db"
    ResultsStore(db).append([{"run_id": "r1", "task": "t", "metric": "m", "value": 2.0}])
    size, mtime = db.stat().st_size, db.stat().st_mtime_ns
    ro = ResultsStore(db, readonly=True)
    assert [r["value"] for r in ro.query()] == [2.0]
    with pytest.raises(Exception, match="readonly"):
        ro.append([{"run_id": "r2", "task": "t", "metric": "m", "value": 3.0}])
    assert (db.stat().st_size, db.stat().st_mtime_ns) == (size, mtime)
