"""Gather what a report shows: result rows from SQLite stores and ``results.json`` files, and run
folders (``config.yaml``, ``metrics.jsonl``, sample grids).

Why one flat row type: a store row and a ``results.json`` record describe the same thing (a metric
of a method at a seed under a protocol), so the aggregation and the pages need not care where a
number came from. ``results.json`` files of the experiment scripts differ in their keys; the
heuristics below (identity keys, numeric leaves) map them to rows without per-script code.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fmlab.errors import DataError

# string fields of a results.json record that together name the compared method, in this order
IDENTITY_KEYS = ("method", "objective", "config", "variant", "init", "pool", "arch", "experiment")
# the x-axis of a label-budget sweep: shots per class, or a number of labelled examples
SHOT_KEYS = ("shots", "limit")
# numeric leaves that describe the run (sizes, timings, chance levels), not a result
_NOT_A_RESULT = re.compile(r"^(seed|seeds|shots|steps?|epochs?|batch_size|images_seen|n_.*|.*seconds|"
                           r".*_s|cpu_.*|wall_.*|.*_min|chance_.*|probe_c|views|n|limit)$", re.IGNORECASE)


@dataclass
class Row:
    """One number: ``metric`` of ``method`` at ``seed`` (and ``shots``) in ``task``."""

    task: str
    method: str
    metric: str
    value: float
    seed: int | None = None
    shots: Any = None
    run_id: str = ""
    origin: str = ""  # the file the row was read from
    protocol: dict[str, Any] = field(default_factory=dict)
    step: int | None = None  # the training step of an evaluation made during training (GANs)


@dataclass
class RunDir:
    """A training run folder: its resolved config, its metric records and its latest sample grid."""

    name: str
    path: Path
    config: dict[str, Any]
    records: list[dict[str, Any]]
    samples: Path | None = None


def read_store(path: str | os.PathLike) -> list[Row]:
    """Rows of one SQLite results store, opened read-only.

    Args:
        path: the store (``fmlab.db``).

    Returns:
        One :class:`Row` per stored row, the protocol columns in ``protocol``.

    Raises:
        fmlab.errors.DataError: naming the file when it is missing, not SQLite, not a results
            store, or from a newer schema.

    Examples:
        >>> import tempfile, os
        >>> from fmlab.results import ResultsStore
        >>> db = os.path.join(tempfile.mkdtemp(), "r.db")
        >>> _ = ResultsStore(db).append([{"run_id": "r", "task": "adapt", "method": "ncm",
        ...                               "metric": "accuracy", "value": 0.5, "extra": {"shots": 4}}])
        >>> [(r.task, r.method, r.shots, r.value) for r in read_store(db)]
        [('adapt', 'ncm', 4, 0.5)]
    """
    from fmlab.results import ResultsStore

    out = []
    for r in ResultsStore(Path(path), readonly=True).query():
        extra = _json_field(r.get("extra"))
        protocol = {"source": r.get("source"), "split_hash": r.get("split_hash"),
                    "backbone": r.get("backbone"), "weights_hash": r.get("weights_hash"),
                    "hyperparameters": _json_field(r.get("hyperparameters")),
                    "command": extra.get("command"), "git_sha": r.get("git_sha"),
                    "time": r.get("time")}
        if r.get("value") is None or not math.isfinite(r["value"]):
            continue
        step = extra.get("step") if isinstance(extra.get("step"), int) else None
        out.append(Row(r["task"], r.get("method") or "-", r["metric"], float(r["value"]),
                       r.get("seed"), extra.get("shots"), r["run_id"], str(path),
                       {k: v for k, v in protocol.items() if v not in (None, {}, "")}, step))
    return out


def read_results_json(path: str | os.PathLike, task: str) -> list[Row]:
    """Rows of an experiment's ``results.json`` (a list of records).

    Args:
        path: the file.
        task: the task name given to its rows (the folder's path under ``--runs``).

    Returns:
        One row per numeric result leaf of each record; records without one give none.

    Raises:
        fmlab.errors.DataError: naming the file when it is not JSON.

    Examples:
        >>> import tempfile, os, json
        >>> p = os.path.join(tempfile.mkdtemp(), "results.json")
        >>> _ = open(p, "w").write(json.dumps([{"method": "ncm", "seed": 1, "shots": 2,
        ...                                     "accuracy": 0.5, "fit_seconds": 0.1}]))
        >>> [(r.method, r.seed, r.shots, r.metric) for r in read_results_json(p, "adapt")]
        [('ncm', 1, 2, 'accuracy')]
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: not a JSON results file ({e})") from None
    if isinstance(data, dict):
        data = data.get("results", data.get("records", [data]))
    rows = []
    for i, rec in enumerate(data if isinstance(data, list) else []):
        if not isinstance(rec, dict):
            continue
        method = "/".join(str(rec[k]) for k in IDENTITY_KEYS if isinstance(rec.get(k), (str, int))
                          and not isinstance(rec.get(k), bool)) or "-"
        seed = rec.get("seed") if isinstance(rec.get("seed"), int) else None
        protocol = _record_protocol(rec)
        for metric, value in _numeric_leaves(rec):
            shots = next((rec[k] for k in SHOT_KEYS if k in rec), None)
            rows.append(Row(task, method, metric, value, seed, shots, f"{task}#{i}",
                            str(path), protocol))
    return rows


def read_run_dir(path: Path, name: str) -> RunDir:
    """One run folder; a line of ``metrics.jsonl`` cut by a crash is skipped."""
    from fmlab.engine.config import read_yaml

    config: Any = {}
    if (path / "config.yaml").is_file():
        config = read_yaml(path / "config.yaml") or {}
    records = []
    if (path / "metrics.jsonl").is_file():
        for line in (path / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict) and "step" in rec:
                records.append(rec)
    grids = sorted((path / "samples").glob("step_*.png")) if (path / "samples").is_dir() else []
    return RunDir(name, path, config if isinstance(config, dict) else {}, records,
                  grids[-1] if grids else None)


def scan_runs(root: str | os.PathLike) -> tuple[list[Row], list[RunDir]]:
    """Every ``results.json`` and run folder (one holding ``metrics.jsonl``) under ``root``.

    Args:
        root: a folder (``docs/results``, ``runs/``).

    Returns:
        The rows (task: the ``results.json`` folder relative to ``root``, or ``root``'s name when
        the file is at the top) and the run folders, both in path order.

    Raises:
        fmlab.errors.DataError: ``root`` is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"--runs {root}: not a directory")
    rows: list[Row] = []
    runs: list[RunDir] = []
    for dirpath, dirnames, filenames in sorted(os.walk(root)):
        dirnames.sort()
        here = Path(dirpath)
        rel = here.relative_to(root).as_posix()
        if "results.json" in filenames:
            rows += read_results_json(here / "results.json", rel if rel != "." else root.name)
        if "metrics.jsonl" in filenames:
            runs.append(read_run_dir(here, rel if rel != "." else root.name))
    return rows, runs


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings as one level with dotted keys (lists stay values).

    Examples:
        >>> flatten({"trainer": {"seed": 1, "loggers": ["jsonl"]}, "lr": 0.1})
        {'trainer.seed': 1, 'trainer.loggers': ['jsonl'], 'lr': 0.1}
    """
    if not isinstance(d, dict):
        return {prefix.rstrip("."): d} if prefix else {}
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _numeric_leaves(rec: dict[str, Any]) -> list[tuple[str, float]]:
    out = []
    for key, value in flatten({k: v for k, v in rec.items() if k not in ("protocol", "hyperparameters")}).items():
        leaf = key.rsplit(".", 1)[-1]
        if key.startswith("metrics."):
            key = key[len("metrics."):]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or _NOT_A_RESULT.match(leaf):
            continue
        if math.isfinite(float(value)):
            out.append((key, float(value)))
    return out


def _record_protocol(rec: dict[str, Any]) -> dict[str, Any]:
    p = rec.get("protocol") if isinstance(rec.get("protocol"), dict) else {}
    facts = {"source": p.get("source") or rec.get("source") or rec.get("data"),
             "split_hash": rec.get("split_sha256") or p.get("test_content_hash"),
             "backbone": p.get("backbone") or rec.get("arch") or rec.get("backbone"),
             "weights_hash": p.get("weights_sha256"),
             "hyperparameters": rec.get("hyperparameters"),
             "command": rec.get("command") or rec.get("train_command")}
    return {k: v for k, v in facts.items() if v not in (None, {}, "")}


def _json_field(text: Any) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text) if isinstance(text, str) else text
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}
