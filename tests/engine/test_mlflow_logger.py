"""trainer.loggers: the key's rules, and MLflow logging that leaves the run unchanged."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from fmlab.engine.config import OptimConfig, TrainerConfig, load_config
from fmlab.engine.data import TensorSource
from fmlab.engine.logger import read_metrics
from fmlab.engine.trainer import Trainer
from fmlab.errors import ConfigError
from fmlab.utils.io import sha256_file

from ._objectives import TinyObjective, blobs


def _fit(run_dir, loggers):
    x, y = blobs(64)
    cfg = TrainerConfig(batch_size=16, max_steps=6, log_every=2, progress=False, loggers=loggers,
                        device="cpu")
    Trainer(TinyObjective(), TensorSource(x, y), cfg, OptimConfig(lr=0.05), run_dir=run_dir).fit()
    return sha256_file(run_dir / "encoder.safetensors")


def test_loggers_key_defaults_and_validation(monkeypatch):
    assert TrainerConfig().active_loggers() == ["jsonl", "tensorboard"]
    assert TrainerConfig(tensorboard=False).active_loggers() == ["jsonl"]  # the old key still works
    from dataclasses import dataclass, field

    @dataclass
    class Run:
        trainer: TrainerConfig = field(default_factory=TrainerConfig)

    cfg = load_config(None, Run, ["trainer.loggers=[jsonl, mlflow]"]) if _has_mlflow() else None
    if cfg is not None:
        assert cfg.trainer.active_loggers() == ["jsonl", "mlflow"]
    with pytest.raises(ConfigError, match="unknown logger.*wandb"):
        load_config(None, Run, ["trainer.loggers=[jsonl, wandb]"])
    with pytest.raises(ConfigError, match="must include jsonl"):
        load_config(None, Run, ["trainer.loggers=[tensorboard]"])
    # mlflow requested but not importable: one error naming the extra
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "mlflow" else real(n, *a))
    with pytest.raises(ConfigError, match=r"\[track\]"):
        load_config(None, Run, ["trainer.loggers=[jsonl, mlflow]"])


def _has_mlflow() -> bool:
    import importlib.util

    return importlib.util.find_spec("mlflow") is not None


def test_mlflow_logs_params_metrics_artifacts_and_run_is_identical(tmp_path, monkeypatch):
    pytest.importorskip("mlflow", reason="mlflow is not installed (pip install -e '.[track]')")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", str(tmp_path / "mlruns"))
    plain = _fit(tmp_path / "plain", ["jsonl"])
    tracked = _fit(tmp_path / "tracked", ["jsonl", "mlflow"])
    assert plain == tracked  # same weights with or without MLflow
    def logged(name):  # the records without the wall-clock throughput
        return [{k: v for k, v in r.items() if k != "images_per_s"} for r in read_metrics(tmp_path / name)]

    assert logged("plain") == logged("tracked")
    from mlflow.tracking import MlflowClient

    run_id = json.loads((tmp_path / "tracked" / "mlflow_run.json").read_text())["run_id"]
    client = MlflowClient(tracking_uri=(tmp_path / "mlruns").as_uri())
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["trainer.max_steps"] == "6" and run.data.params["optim.lr"] == "0.05"
    history = client.get_metric_history(run_id, "loss")
    assert [m.step for m in history] == [2, 4, 6]
    jsonl = {r["step"]: r["loss"] for r in read_metrics(tmp_path / "tracked")}
    assert all(abs(m.value - jsonl[m.step]) < 1e-12 for m in history)
    names = {a.path for a in client.list_artifacts(run_id)}
    assert {"config.yaml", "metrics.jsonl", "encoder.safetensors"} <= names
    art = client.download_artifacts(run_id, "encoder.safetensors", str(tmp_path / "dl"))
    assert load_file(art).keys() == load_file(str(tmp_path / "tracked" / "encoder.safetensors")).keys()


def test_mlflow_resume_continues_the_same_run(tmp_path, monkeypatch):
    pytest.importorskip("mlflow", reason="mlflow is not installed (pip install -e '.[track]')")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", str(tmp_path / "mlruns"))
    x, y = blobs(64)
    run = tmp_path / "run"
    for steps in (4, 6):  # a run stopped at step 4, then resumed to step 6
        cfg = TrainerConfig(batch_size=16, max_steps=steps, log_every=2, progress=False, device="cpu",
                            loggers=["jsonl", "mlflow"], checkpoint_every=2)
        Trainer(TinyObjective(), TensorSource(x, y), cfg, OptimConfig(lr=0.05), run_dir=run).fit(resume=run if steps == 6 else None)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=(tmp_path / "mlruns").as_uri())
    runs = client.search_runs([client.get_experiment_by_name("fmlab").experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(runs[0].info.run_id, "loss")] == [2, 4, 6]


def test_cli_mlflow_without_the_package_exits_2(tmp_path, monkeypatch, capsys):
    import importlib.util
    from pathlib import Path

    from fmlab.cli.main import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "mlflow" else real(n, *a))
    config = Path(__file__).resolve().parents[2] / "configs" / "pretrain" / "simclr_mnist.yaml"
    rc = main(["pretrain", "--config", str(config), "--out", str(tmp_path / "run"),
               "--set", "trainer.loggers=[jsonl,mlflow]"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and ".[track]" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()  # refused before anything is written
