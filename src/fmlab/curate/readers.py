"""Streaming readers for caption pools: JSONL, CSV and parquet.

Curation reads the pool twice: pass 1 takes only the caption of every record (to match and count),
pass 2 writes the records that were kept, unchanged, as JSON lines. Both passes see the records in
the same order, in batches, so memory stays bounded by the batch size. JSONL records are copied
byte for byte (never re-serialised); CSV rows and parquet rows become JSON objects of their columns.
"""

from __future__ import annotations

import base64
import csv
import datetime as _dt
import decimal
import gzip
import json
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from fmlab.errors import ConfigError, DataError

FORMATS = ("jsonl", "csv", "parquet")
_SUFFIXES = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}


def detect_format(path: str | os.PathLike, fmt: str = "auto") -> str:
    """``fmt`` if given, else from the suffix (``.gz`` is looked through for JSONL/CSV)."""
    if fmt != "auto":
        if fmt not in FORMATS:
            raise ConfigError(
                f"unknown captions format {fmt!r}; expected one of {', '.join(FORMATS)}"
            )
        return fmt
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    if suffixes and suffixes[-1] in _SUFFIXES:
        return _SUFFIXES[suffixes[-1]]
    raise ConfigError(
        f"cannot tell the format of {path} from its suffix; pass --format jsonl|csv|parquet"
    )


def _caption(value: Any, where: str, field: str) -> str:
    if isinstance(value, str):
        return value
    if value is None:  # a null caption matches nothing; the pair is dropped like any unmatched one
        return ""
    raise DataError(f"{where}: field {field!r} must be a string, got {type(value).__name__}")


def _open_binary(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.suffix.lower() == ".gz" else open(path, "rb")


class CaptionSource:
    """A captions file: ``caption_batches()`` for pass 1, ``kept_records(keep)`` for pass 2."""

    def __init__(
        self,
        path: str | os.PathLike,
        field: str = "caption",
        fmt: str = "auto",
        batch_size: int = 65536,
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"captions file not found: {self.path}")
        if not field:
            raise ConfigError("caption field name must not be empty")
        self.field = field
        self.format = detect_format(self.path, fmt)
        self.batch_size = int(batch_size)

    # -- pass 1 ---------------------------------------------------------------------------------
    def caption_batches(self, byte_range: tuple[int, int] | None = None) -> Iterator[list[str]]:
        """Lists of captions, in record order.

        ``byte_range`` (JSONL only, see :meth:`byte_ranges`): only the lines starting in it.
        """
        if byte_range is not None:
            return self._captions_jsonl(byte_range)
        return getattr(self, f"_captions_{self.format}")()

    @property
    def splittable(self) -> bool:
        """Whether pass 1 can be split by bytes: plain (not gzipped) JSONL."""
        return self.format == "jsonl" and self.path.suffix.lower() != ".gz"

    def byte_ranges(self, n: int) -> list[tuple[int, int]]:
        """Up to ``n`` contiguous byte ranges covering the file, each starting at a line start."""
        size = self.path.stat().st_size
        bounds = [0]
        with open(self.path, "rb") as f:
            for k in range(1, n):
                f.seek(k * size // n)
                f.readline()  # a line belongs to the range holding its first byte
                bounds.append(max(bounds[-1], f.tell()))
        bounds.append(size)
        return [(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]

    # -- pass 2 ---------------------------------------------------------------------------------
    def kept_records(self, keep: np.ndarray) -> Iterator[bytes]:
        """The JSON lines (UTF-8, ending in ``\\n``) of records with ``keep[i]`` true.

        Raises :class:`DataError` when the file no longer holds ``len(keep)`` records.
        """
        n = 0
        for n_batch, lines in getattr(self, f"_kept_{self.format}")(keep):
            n += n_batch
            yield from lines
        if n != len(keep):
            raise DataError(
                f"captions file {self.path} changed while curating: "
                f"{n} records now, {len(keep)} before"
            )

    # -- JSONL ------------------------------------------------------------------------------------
    def _jsonl_lines(
        self, byte_range: tuple[int, int] | None = None
    ) -> Iterator[tuple[int, bytes]]:
        """Non-blank lines with their line number (relative to the range's start when ranged)."""
        with _open_binary(self.path) as f:
            if byte_range is None:
                for lineno, line in enumerate(f, 1):
                    if line.strip():
                        yield lineno, line
                return
            pos, end = byte_range
            f.seek(pos)
            for lineno, line in enumerate(f, 1):
                if pos >= end:
                    return
                pos += len(line)
                if line.strip():
                    yield lineno, line

    def _captions_jsonl(self, byte_range: tuple[int, int] | None = None) -> Iterator[list[str]]:
        return _batched(self._jsonl_captions(byte_range), self.batch_size)

    def _jsonl_captions(self, byte_range: tuple[int, int] | None) -> Iterator[str]:
        field = self.field
        for lineno, line in self._jsonl_lines(byte_range):
            try:
                record = json.loads(line)
            except ValueError as e:
                raise DataError(f"{self.path}:{lineno}: not valid JSON ({e})") from None
            if not isinstance(record, dict):
                raise DataError(
                    f"{self.path}:{lineno}: expected a JSON object, got {type(record).__name__}"
                )
            if field not in record:
                raise DataError(f"{self.path}:{lineno}: record has no field {field!r}")
            yield _caption(record[field], f"{self.path}:{lineno}", field)

    def _kept_jsonl(self, keep: np.ndarray) -> Iterator[tuple[int, list[bytes]]]:
        return _kept_batches((line for _, line in self._jsonl_lines()), keep, self.batch_size,
                             lambda line: line if line.endswith(b"\n") else line + b"\n")

    # -- CSV --------------------------------------------------------------------------------------
    def _csv_rows(self) -> Iterator[dict[str, str]]:
        raw = _open_binary(self.path)
        with raw, open_text(raw) as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None:
                raise DataError(f"captions file {self.path} is empty (a CSV header is expected)")
            if self.field not in reader.fieldnames:
                raise DataError(
                    f"{self.path}: no column {self.field!r} in the CSV header "
                    f"(columns: {', '.join(reader.fieldnames)})"
                )
            try:
                yield from reader
            except csv.Error as e:
                raise DataError(f"{self.path}:{reader.line_num}: malformed CSV ({e})") from None

    def _captions_csv(self) -> Iterator[list[str]]:
        field = self.field
        return _batched((row.get(field) or "" for row in self._csv_rows()), self.batch_size)

    def _kept_csv(self, keep: np.ndarray) -> Iterator[tuple[int, list[bytes]]]:
        return _kept_batches(self._csv_rows(), keep, self.batch_size, _json_line)

    # -- parquet ----------------------------------------------------------------------------------
    def _parquet(self):
        try:
            import pyarrow.parquet as pq
        except ImportError:  # pragma: no cover - depends on the environment
            raise ConfigError(
                "reading parquet needs the 'pyarrow' package: pip install 'fmlab[curate]'"
            ) from None
        try:
            pf = pq.ParquetFile(self.path)
        except Exception as e:  # pyarrow raises several types for a non-parquet file
            raise DataError(f"{self.path}: not a readable parquet file ({e})") from None
        names = pf.schema_arrow.names
        if self.field not in names:
            raise DataError(
                f"{self.path}: no column {self.field!r} in the parquet schema "
                f"(columns: {', '.join(names)})"
            )
        return pf

    def _captions_parquet(self) -> Iterator[list[str]]:
        pf, row = self._parquet(), 0
        for rb in pf.iter_batches(batch_size=self.batch_size, columns=[self.field]):
            values = rb.column(0).to_pylist()
            if values and not all(v is None or isinstance(v, str) for v in values):
                bad = next(
                    j for j, v in enumerate(values) if v is not None and not isinstance(v, str)
                )
                _caption(values[bad], f"{self.path}: row {row + bad}", self.field)
            yield [v or "" for v in values]
            row += len(values)

    def _kept_parquet(self, keep: np.ndarray) -> Iterator[tuple[int, list[bytes]]]:
        import pyarrow as pa

        pf, start = self._parquet(), 0
        for rb in pf.iter_batches(batch_size=self.batch_size):
            n = rb.num_rows
            mask = np.zeros(n, dtype=bool)
            part = keep[start : start + n]
            mask[: len(part)] = part
            rows = rb.filter(pa.array(mask)).to_pylist() if mask.any() else []
            yield n, [_json_line(r) for r in rows]
            start += n


def open_text(raw: IO[bytes]):
    """UTF-8 text view of a binary stream, with the newline handling the csv module wants."""
    import io

    return io.TextIOWrapper(raw, encoding="utf-8", newline="")


def _batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Lists of ``size`` consecutive items (the last one shorter, none when empty)."""
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _kept_batches(rows: Iterable[Any], keep: np.ndarray, size: int,
                  render: Callable[[Any], bytes]) -> Iterator[tuple[int, list[bytes]]]:
    """(rows read, rendered kept rows) every ``size`` rows, and once more at the end; row i is
    kept when ``keep[i]`` (rows past the end of ``keep`` are dropped)."""
    i, since, n_keep, out = 0, 0, len(keep), []
    for row in rows:
        if i < n_keep and keep[i]:
            out.append(render(row))
        i += 1
        since += 1
        if since >= size:
            yield since, out
            since, out = 0, []
    yield since, out


def _json_default(o: Any) -> Any:
    if isinstance(o, (bytes, bytearray)):
        return base64.b64encode(bytes(o)).decode("ascii")
    if isinstance(o, (_dt.datetime, _dt.date, _dt.time)):
        return o.isoformat()
    if isinstance(o, decimal.Decimal):
        return str(o)
    if hasattr(o, "tolist"):
        return o.tolist()
    return str(o)


def _json_line(record: dict) -> bytes:
    return (json.dumps(record, ensure_ascii=False, default=_json_default) + "\n").encode("utf-8")
