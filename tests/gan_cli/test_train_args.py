"""``fmlab gan train`` flags go through the engine's one --config/--out/--resume policy
(:func:`fmlab.engine.resolve_run_dir`); nothing is trained or written when they are wrong."""

from __future__ import annotations

import pytest

from fmlab.cli.main import main


@pytest.mark.parametrize("args, needle", [
    (["--config", "c.yaml"], "give --out RUN_DIR"),
    (["--out", "run"], "give --config FILE (configs/gan/"),
    (["--resume", "nosuch"], "--resume nosuch: no such run directory"),
    (["--resume", "a", "--out", "b"], "differ; a run is resumed in place"),
    (["--resume", "a", "--config", "c.yaml"], "drop --config"),
])
def test_run_dir_policy_errors(tmp_path, monkeypatch, capsys, args, needle):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a").mkdir()
    assert main(["gan", "train", *args, "--no-db"]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]  # nothing created


def test_resume_reads_the_runs_own_config(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("trainer: {max_stepz: 3}\n")
    assert main(["gan", "train", "--resume", str(run), "--no-db"]) == 2
    assert f"{run / 'config.yaml'}: unknown key 'trainer.max_stepz'" in capsys.readouterr().err
