"""MLflow logging of a run (``trainer.loggers: [..., mlflow]``): params, metrics, final artifacts.

Why the client API (``MlflowClient``) and not ``mlflow.start_run``: no global "active run" state,
so a training run inside a notebook or a test never picks up or closes someone else's run. The
store is ``$MLFLOW_TRACKING_URI`` (default ``./mlruns``, a local file store). MLflow 3 refuses a
file store unless ``MLFLOW_ALLOW_FILE_STORE`` is set; we set it (only when unset) for file
stores, since a local folder is what fmlab promises. The sink touches no random stream: the run
trains identically with or without it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fmlab.errors import ConfigError
from fmlab.utils.io import write_json

RUN_FILE = "mlflow_run.json"  # RUN_DIR/mlflow_run.json: the MLflow run id, so --resume continues it
EXPERIMENT = "fmlab"
_BATCH = 100  # MLflow's log_batch takes at most 100 params per call


def tracking_uri(env: Mapping[str, str] | None = None) -> str:
    """``MLFLOW_TRACKING_URI`` from ``env`` (default ``os.environ``), else ``./mlruns``; a plain path
    becomes an absolute ``file:`` URI.

    Examples:
        >>> tracking_uri({}).startswith("file://") and tracking_uri({}).endswith("/mlruns")
        True
        >>> tracking_uri({"MLFLOW_TRACKING_URI": "sqlite:///m.db"})
        'sqlite:///m.db'
    """
    uri = (os.environ if env is None else env).get("MLFLOW_TRACKING_URI") or "./mlruns"
    if "://" not in uri and not uri.startswith("file:"):
        uri = Path(uri).resolve().as_uri()
    return uri


class MlflowSink:
    """One MLflow run mirroring one fmlab run folder.

    Args:
        run_dir: the fmlab run folder (its ``config.yaml`` gives the params).
        run_name: the MLflow run name (default: the folder's name).

    Raises:
        fmlab.errors.ConfigError: mlflow is not installed (naming the ``[track]`` extra).
    """

    def __init__(self, run_dir: str | os.PathLike, run_name: str | None = None) -> None:
        uri = tracking_uri()
        if uri.startswith("file:"):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise ConfigError("trainer.loggers: 'mlflow' needs the mlflow package, which is not "
                              "installed; install the extra: pip install -e '.[track]'") from None
        self.run_dir = Path(run_dir)
        self.client = MlflowClient(tracking_uri=uri)
        self.run_id = self._start(run_name or self.run_dir.resolve().name)

    def _start(self, run_name: str) -> str:
        saved = self.run_dir / RUN_FILE
        if saved.is_file():  # a resumed run continues its MLflow run
            run_id = json.loads(saved.read_text(encoding="utf-8"))["run_id"]
            self.client.update_run(run_id, status="RUNNING")
            return run_id
        exp = self.client.get_experiment_by_name(EXPERIMENT)
        exp_id = exp.experiment_id if exp is not None else self.client.create_experiment(EXPERIMENT)
        run = self.client.create_run(exp_id, run_name=run_name,
                                     tags={"fmlab.run_dir": str(self.run_dir.resolve())})
        write_json(saved, {"run_id": run.info.run_id, "tracking_uri": self.client.tracking_uri})
        self._log_params(run.info.run_id)
        return run.info.run_id

    def _log_params(self, run_id: str) -> None:
        """The resolved ``config.yaml`` as dotted params (values cut to MLflow's 6000 chars)."""
        from mlflow.entities import Param

        from fmlab.engine.config import read_yaml

        cfg = self.run_dir / "config.yaml"
        data = read_yaml(cfg) if cfg.is_file() else {}
        params = [Param(k[:250], json.dumps(v) if not isinstance(v, str) else v)
                  for k, v in _flatten(data if isinstance(data, dict) else {}).items()]
        for i in range(0, len(params), _BATCH):
            self.client.log_batch(run_id, params=[Param(p.key, p.value[:6000])
                                                  for p in params[i:i + _BATCH]])

    def log(self, record: dict[str, Any]) -> None:
        """Log every numeric value of a ``metrics.jsonl`` record at its step."""
        from mlflow.entities import Metric

        step, now = int(record["step"]), int(time.time() * 1000)
        metrics = [Metric(k.replace("/", "."), float(v), now, step)
                   for k, v in _flatten(record).items()
                   if k not in ("step", "epoch") and isinstance(v, (int, float)) and not isinstance(v, bool)]
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)

    def finish(self, status: str = "FINISHED") -> None:
        """Log the run folder's top-level files (config, metrics, the exported encoder) and end."""
        for path in sorted(self.run_dir.iterdir()):
            if path.is_file() and not path.is_symlink() and not path.name.startswith("."):
                self.client.log_artifact(self.run_id, str(path))
        self.client.set_terminated(self.run_id, status=status)


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + str(k)] = v
    return out
