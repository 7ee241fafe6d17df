"""``fmlab study pretrain-advantage``: outputs on a tiny grid; bad m/n and unknown keys exit 2."""

from __future__ import annotations

import json

import pytest

from fmlab.cli.main import main

TINY = ["--set", "grid.m=[30,120]", "--set", "grid.n=[6,40]", "--set", "grid.knobs=[0.0,1.0]",
        "--set", "grid.seeds=2", "--set", "grid.n_test=300", "--set", "gmm.n_init=1",
        "--set", "factor.d=12"]


def test_tiny_grid_writes_every_output(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["study", "pretrain-advantage", "--out", str(out), *TINY]) == 0
    for name in ("results.json", "summary.md", "advantage_heatmap.png", "rate_fit.png", "fmlab.db"):
        assert (out / name).is_file(), name
    res = json.loads((out / "results.json").read_text())
    recs = res["records"]
    # gmm: per (knob, n, seed) 2 baselines + 2 m values; factor: 1 baseline + 2 m values
    assert len(recs) == 2 * 2 * 2 * (2 + 2) + 2 * 2 * 2 * (1 + 2)
    assert {r["method"] for r in recs} == {"pretrain_erm", "logreg", "qda", "ridge"}
    assert all(r["m"] is None for r in recs if r["method"] != "pretrain_erm")
    assert res["config"]["grid"]["m"] == [30, 120]
    summary = (out / "summary.md").read_text()
    assert "gmm, knob = 1" in summary and "±" in summary
    assert (out / "advantage_heatmap.png").read_bytes()[:4] == b"\x89PNG"
    assert "records in" in capsys.readouterr().out


@pytest.mark.parametrize("key,value", [("grid.m", "[0]"), ("grid.m", "[10,-5]"), ("grid.n", "[0]"),
                                       ("grid.n", "[-1]")])
def test_m_or_n_below_one_exits_2_naming_the_key(tmp_path, capsys, key, value):
    out = tmp_path / "run"
    assert main(["study", "pretrain-advantage", "--out", str(out), "--set", f"{key}={value}"]) == 2
    err = capsys.readouterr().err
    assert key in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_unknown_key_exits_2(tmp_path, capsys):
    assert main(["study", "pretrain-advantage", "--out", str(tmp_path / "r"),
                 "--set", "grid.mm=[5]"]) == 2
    assert "grid.mm" in capsys.readouterr().err
    cfg = tmp_path / "c.yaml"
    cfg.write_text("gmm:\n  sepration: 2.0\n")
    assert main(["study", "pretrain-advantage", "--out", str(tmp_path / "r"), "--config", str(cfg)]) == 2
    assert "gmm.sepration" in capsys.readouterr().err


def test_shipped_config_loads_and_matches_defaults():
    from pathlib import Path

    from fmlab.experiments.pretrain_advantage import AdvantageConfig, load_advantage_config

    root = Path(__file__).resolve().parents[2]
    assert load_advantage_config(root / "configs/study/pretrain_advantage.yaml") == AdvantageConfig()
