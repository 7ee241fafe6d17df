"""The SQLite results store: one row per (run, method, seed, metric) with its protocol.

Every evaluation in fmlab appends here, so a number never travels without the source and split
hash, the backbone and weights hash, the hyperparameters and the seed that produced it. SQLite
transactions make each append atomic.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from fmlab.errors import DataError, FmlabError
from fmlab.results.protocol import Protocol

COLUMNS = (
    "run_id", "time", "fmlab_version", "git_sha", "task", "source", "split_hash", "backbone",
    "weights_hash", "method", "hyperparameters", "seed", "metric", "value", "seconds", "extra",
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL, time TEXT NOT NULL, fmlab_version TEXT, git_sha TEXT,
    task TEXT NOT NULL, source TEXT, split_hash TEXT, backbone TEXT, weights_hash TEXT,
    method TEXT, hyperparameters TEXT, seed INTEGER, metric TEXT NOT NULL, value REAL,
    seconds REAL, extra TEXT
);
CREATE INDEX IF NOT EXISTS results_task ON results(task);
"""

# SQLite ``PRAGMA user_version`` of the stores this fmlab writes; a reader refuses a larger one (a
# store from a newer fmlab whose columns it may misread). Stores written before the version was
# set read 0 and are schema 1.
SCHEMA_VERSION = 1


def git_sha() -> str | None:
    """The commit of the fmlab checkout in use, when it is one (editable installs)."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                             timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def new_run_id() -> str:
    """A sortable, unique id for the rows of one run: local time, then 8 random hex digits.

    Returns:
        ``"YYYYmmdd-HHMMSS-xxxxxxxx"``.

    Examples:
        >>> rid = new_run_id()
        >>> len(rid), rid[8], rid[15], rid != new_run_id()
        (24, '-', '-', True)
    """
    return time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:8]


class ResultsStore:
    """Append-only table of results in a SQLite file.

    Writers open it normally (the file and the table are created when missing). Readers pass
    ``readonly=True``: the file must exist and is opened with SQLite's ``mode=ro``, so a read
    command never creates, converts or touches a file (a 0-byte file stays 0 bytes).

    Args:
        path: the SQLite file.
        readonly: open an existing store for queries only.

    Raises:
        fmlab.errors.DataError: ``readonly`` and the file is missing, is not SQLite, or holds
            no ``results`` table.
        fmlab.errors.FmlabError: the file cannot be used as a database (writers).

    Examples:
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "r.db")
        >>> ResultsStore(path).append([{"run_id": "r1", "task": "t", "metric": "m", "value": 1.0}])
        1
        >>> [(r["run_id"], r["value"]) for r in ResultsStore(path, readonly=True).query()]
        [('r1', 1.0)]
    """

    def __init__(self, path: str | Path, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        if readonly:
            self._check_readable()
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with self._connect() as con:
                con.executescript(_SCHEMA)
                if con.execute("PRAGMA user_version").fetchone()[0] == 0:
                    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.DatabaseError as e:
            raise FmlabError(f"{self.path}: not a usable results database ({e})") from None

    def _check_readable(self) -> None:
        if not self.path.is_file():
            raise DataError(f"results database not found: {self.path}")
        try:
            con = self._connect()
            try:
                found = con.execute("SELECT name FROM sqlite_master WHERE type='table' AND name='results'"
                                    ).fetchone()
                version = con.execute("PRAGMA user_version").fetchone()[0]
            finally:
                con.close()
        except sqlite3.DatabaseError as e:
            raise DataError(f"{self.path}: not a usable results database ({e})") from None
        if found is None:
            raise DataError(f"{self.path}: not an fmlab results database (no 'results' table"
                            f"{'; the file is empty' if self.path.stat().st_size == 0 else ''})")
        if version > SCHEMA_VERSION:
            raise DataError(f"{self.path}: results schema version {version} is newer than this fmlab "
                            f"reads ({SCHEMA_VERSION}); upgrade fmlab to read it")

    def _connect(self) -> sqlite3.Connection:
        if self.readonly:
            return sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
        return sqlite3.connect(self.path, timeout=30)

    def append(self, rows: Iterable[dict]) -> int:
        """Insert rows (dicts with keys from :data:`COLUMNS`) in one transaction."""
        from fmlab import __version__

        sha = git_sha()
        now = time.strftime("%Y-%m-%dT%H:%M:%S")
        prepared = []
        for r in rows:
            unknown = set(r) - set(COLUMNS)
            if unknown:
                raise ValueError(f"unknown result columns {sorted(unknown)}")
            row = {"time": now, "fmlab_version": __version__, "git_sha": sha, **r}
            for k in ("hyperparameters", "extra"):
                if row.get(k) is not None and not isinstance(row[k], str):
                    row[k] = json.dumps(row[k], sort_keys=True, default=str)
            prepared.append(tuple(row.get(c) for c in COLUMNS))
        with self._connect() as con:
            con.executemany(
                f"INSERT INTO results ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
                prepared,
            )
        return len(prepared)

    def record(self, task: str, protocol: Protocol, records: list[Mapping[str, Any]],
               metrics: tuple[str, ...] | list[str] | None = None, *, run_id: str | None = None,
               extra_keys: tuple[str, ...] = (), seconds_key: str = "seconds") -> str:
        """Append ``records`` measured under ``protocol``: the one path from a workflow to the store.

        Args:
            task: the task column (``"adapt"``, ``"finetune"``, ``"classify"``, ``"gan"``, ...).
            protocol: what the numbers were measured on (:meth:`Protocol.of`).
            records: wide records with a key per metric (give ``metrics``) or long records with
                ``metric`` and ``value`` keys; see :meth:`Protocol.rows`.
            metrics: the metric keys of wide records.
            run_id: the run id (default: a new one).
            extra_keys: record keys copied into each row's ``extra``.
            seconds_key: the record key holding the run time.

        Returns:
            The run id of the appended rows.

        Examples:
            >>> import tempfile, os
            >>> store = ResultsStore(os.path.join(tempfile.mkdtemp(), "r.db"))
            >>> p = Protocol.of("npz:x.npz", "test", split_hash="ab")
            >>> rid = store.record("adapt", p, [{"method": "ncm", "seed": 1, "accuracy": 0.5}], ("accuracy",))
            >>> [(r["method"], r["metric"], r["value"]) for r in store.query(run_id=rid)]
            [('ncm', 'accuracy', 0.5)]
        """
        run_id = run_id or new_run_id()
        self.append(protocol.rows(task, run_id, list(records), metrics, extra_keys=extra_keys,
                                  seconds_key=seconds_key))
        return run_id

    def query(self, task: str | None = None, run_id: str | None = None) -> list[dict]:
        """Rows (dicts with ``id`` and :data:`COLUMNS`) in insertion order.

        Args:
            task: only rows of this task.
            run_id: only rows of this run.

        Returns:
            The rows; ``hyperparameters`` and ``extra`` stay JSON text.
        """
        sql, args = "SELECT * FROM results", []
        conds = []
        if task:
            conds.append("task = ?")
            args.append(task)
        if run_id:
            conds.append("run_id = ?")
            args.append(run_id)
        if conds:
            sql += " WHERE " + " AND ".join(conds)
        sql += " ORDER BY id"
        with self._connect() as con:
            con.row_factory = sqlite3.Row
            return [dict(r) for r in con.execute(sql, args)]


def format_rows(rows: list[dict], fmt: str = "table") -> str:
    """Render query results as an aligned table, CSV, JSON or markdown.

    Args:
        rows: rows from :meth:`ResultsStore.query`.
        fmt: ``"table"``, ``"csv"`` (every column), ``"json"`` (every column) or ``"md"``.

    Returns:
        The text (no trailing newline for table and md).

    Raises:
        fmlab.errors.FmlabError: an unknown ``fmt``.

    Examples:
        >>> rows = [{"run_id": "r1", "task": "adapt", "method": "ncm", "metric": "accuracy", "value": 0.5}]
        >>> print(format_rows(rows, "md"))
        | run_id | task | source | backbone | method | seed | metric | value | seconds |
        |---|---|---|---|---|---|---|---|---|
        | r1 | adapt |  |  | ncm |  | accuracy | 0.5000 |  |
    """
    cols = ["run_id", "task", "source", "backbone", "method", "seed", "metric", "value", "seconds"]
    if fmt == "json":
        return json.dumps(rows, indent=2, default=str)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["id", *COLUMNS])
        w.writeheader()
        w.writerows(rows)
        return buf.getvalue()
    cells = [[_fmt(r.get(c)) for c in cols] for r in rows]
    if fmt == "md":
        lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(c) + " |" for c in cells]
        return "\n".join(lines)
    if fmt != "table":
        raise FmlabError(f"unknown format {fmt!r}; use table, csv, json or md")
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4f}"
    s = str(v)
    return s if len(s) <= 40 else s[:37] + "..."
