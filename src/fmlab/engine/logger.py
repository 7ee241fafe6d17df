"""Run logs: ``metrics.jsonl`` (one JSON object per line), optional TensorBoard and MLflow
(``trainer.loggers``, see :mod:`fmlab.engine.mlflow_sink`), a tqdm bar.

Only rank 0 writes. Each line is flushed as it is written so a killed run keeps its log; on
resume the lines after the checkpoint's step are dropped, so the final file reads like one
uninterrupted run.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from fmlab.errors import DataError
from fmlab.utils.io import atomic_write, jsonable

METRICS = "metrics.jsonl"


class MetricsLogger:
    """Writes records to ``RUN_DIR/metrics.jsonl`` and, when listed, TensorBoard scalars (if the
    package is there) and an MLflow run.

    Args:
        loggers: ``["jsonl", "tensorboard", "mlflow"]`` or a part (``TrainerConfig.active_loggers``);
            None: jsonl plus tensorboard when ``tensorboard``.
    """

    def __init__(self, run_dir: str | os.PathLike | None, enabled: bool = True,
                 tensorboard: bool = True, progress: bool = False, total: int = 0,
                 initial: int = 0, loggers: list[str] | None = None) -> None:
        self.enabled = enabled and run_dir is not None
        self.path = Path(run_dir) / METRICS if run_dir is not None else None
        self._file = None
        self._tb = None
        self._mlflow = None
        self._bar = None
        loggers = loggers if loggers is not None else ["jsonl"] + (["tensorboard"] if tensorboard else [])
        if self.enabled:
            assert self.path is not None
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = _open_append(self.path)
            if "tensorboard" in loggers:
                self._tb = _tensorboard_writer(self.path.parent / "tb")
            if "mlflow" in loggers:
                from fmlab.engine.mlflow_sink import MlflowSink

                self._mlflow = MlflowSink(self.path.parent)
        if enabled and progress:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True,
                             file=sys.stderr, leave=True)

    def log(self, record: dict[str, Any]) -> None:
        """Append one record (must contain ``step``)."""
        if self._file is not None:
            self._file.write(json.dumps(record, default=jsonable) + "\n")
            self._file.flush()
        if self._tb is not None:
            step = int(record["step"])
            for key, value in _flatten(record).items():
                if key not in ("step", "epoch") and isinstance(value, (int, float)):
                    self._tb.add_scalar(key, value, step)
        if self._mlflow is not None:
            self._mlflow.log(record)

    def advance(self, n: int = 1, **postfix: Any) -> None:
        """Move the progress bar; ``postfix`` (loss, img/s) is shown when given."""
        if self._bar is not None:
            self._bar.update(n)
            if postfix:
                self._bar.set_postfix(postfix, refresh=False)

    def close(self, failed: bool = False) -> None:
        """Close every log; ``failed`` marks the MLflow run FAILED (and logs no artifacts)."""
        if self._mlflow is not None:
            if failed:
                self._mlflow.client.set_terminated(self._mlflow.run_id, status="FAILED")
            else:
                self._mlflow.finish()
            self._mlflow = None
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def truncate_metrics(run_dir: str | os.PathLike, max_step: int) -> None:
    """Keep only records with ``step <= max_step`` (resume after a crash)."""
    path = Path(run_dir) / METRICS
    if not path.exists():
        return
    keep = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:  # a line cut by the crash
            continue
        if int(rec.get("step", 0)) <= max_step:
            keep.append(line)
    with atomic_write(path, "w") as f:
        f.write("".join(line + "\n" for line in keep))


def read_metrics(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """All records of a run's ``metrics.jsonl``."""
    path = Path(run_dir) / METRICS
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def _tensorboard_writer(log_dir: Path):
    try:  # optional: torch's writer needs the tensorboard package
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(log_dir=str(log_dir))


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}/"))
        else:
            out[prefix + k] = v
    return out


def _open_append(path: Path) -> Any:
    """``open(path, "a")`` that refuses a symlink (probe F17: a link planted in the run folder
    must not make the run append to a file elsewhere)."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as e:
        if path.is_symlink():
            raise DataError(f"{path}: is a symbolic link; refusing to append the run's log "
                            "through it (remove the link)") from None
        raise DataError(f"{path}: cannot open the run's log ({e.strerror})") from None
    return os.fdopen(fd, "a", encoding="utf-8")
