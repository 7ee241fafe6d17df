"""`fmlab adapt --base-to-new` and `--transfer-to`: the records and summary carry both sides,
only the images a base split needs are extracted, and per-class methods exit 2."""

from __future__ import annotations

import json

import numpy as np

from fmlab.cli.main import main
from tests.conftest import make_npz


def test_base_to_new_and_cross_dataset_from_the_cli(saved_clip, tmp_path, capsys):
    npz = make_npz(tmp_path / "d.npz", n_train=40, n_test=12, n_classes=4, hw=(16, 16))
    other = make_npz(tmp_path / "o.npz", n_train=12, n_test=9, n_classes=3, hw=(16, 16), seed=5)
    base = ["adapt", "--clip-model", str(saved_clip), "--data", f"npz:{npz}", "--shots", "2",
            "--seeds", "1", "--methods", "zeroshot,coop"]
    assert main([*base, "--base-to-new", "--out", str(tmp_path / "b2n")]) == 0
    recs = json.loads((tmp_path / "b2n" / "results.json").read_text())
    coop = next(r for r in recs if r["method"] == "coop")
    assert coop["evaluation"] == "base_to_new" and len(coop["base_classes"]) == 2
    # the split file indexes the base classes' rows of the train split, listed beside it
    split = json.loads((tmp_path / "b2n" / "splits" / "split_2shot_seed1.json").read_text())
    rows = json.loads((tmp_path / "b2n" / "splits" / "base_to_new_rows.json").read_text())["train_rows"]
    y = np.load(npz)["y_train"]
    assert rows == np.flatnonzero(y < 2).tolist()
    assert coop["n_train"] == 4 and set(y[np.asarray(rows)[split["train"]]].tolist()) == {0, 1}
    assert coop["protocol"]["evaluation"] == "base_to_new"
    summary = (tmp_path / "b2n" / "summary.md").read_text()
    assert "| base | new | H |" in summary
    assert main([*base, "--transfer-to", f"npz:{other}", "--out", str(tmp_path / "x")]) == 0
    recs = json.loads((tmp_path / "x" / "results.json").read_text())
    assert all(r["n_test_target"] == 9 and 0 <= r["target_accuracy"] <= 1 for r in recs)
    assert "| source | target |" in (tmp_path / "x" / "summary.md").read_text()
    capsys.readouterr()
    assert main([*base[:-1], "linear", "--base-to-new", "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert "linear" in err and "per-class" in err and "Traceback" not in err
