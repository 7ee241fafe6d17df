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
