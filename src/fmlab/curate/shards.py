"""A caption pool split over several files: a folder or a glob of JSONL / CSV / Parquet shards.

``CaptionShards`` behaves as one :class:`~fmlab.curate.readers.CaptionSource` whose records are
the shards' records in sorted file order, so both engines curate a sharded pool exactly as the
concatenated file (the Ray engine cuts every shard into its own units).
"""

from __future__ import annotations

import glob
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from fmlab.curate.readers import _SUFFIXES, CaptionSource
from fmlab.errors import DataError
from fmlab.utils.io import sha256_file


def caption_files(spec: str | os.PathLike) -> list[Path]:
    """The files of a pool: one file, the caption files of a folder, or a glob (sorted).

    Examples:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> for n in ("b.jsonl", "a.jsonl", "notes.txt"): _ = (d / n).write_text("")
        >>> [p.name for p in caption_files(d)]
        ['a.jsonl', 'b.jsonl']
    """
    p = Path(spec)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and _is_caption_file(f))
    elif p.is_file():
        return [p]
    elif any(c in str(spec) for c in "*?["):
        files = sorted(Path(f) for f in glob.glob(str(spec)) if Path(f).is_file())
    else:
        raise DataError(f"captions file not found: {p}")
    if not files:
        raise DataError(f"{spec}: no caption files (.jsonl/.json/.ndjson/.csv/.parquet[.gz]) found")
    return files


def _is_caption_file(f: Path) -> bool:
    suffixes = [s.lower() for s in f.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return bool(suffixes) and suffixes[-1] in _SUFFIXES


class CaptionShards:
    """Several caption files read as one pool (record order: sorted files, then file order)."""

    splittable = False  # the local engine reads shards one after the other

    def __init__(self, files: list[Path], field: str = "caption", fmt: str = "auto",
                 batch_size: int = 65536) -> None:
        self.sources = [CaptionSource(f, field=field, fmt=fmt, batch_size=batch_size) for f in files]
        self.path = files[0].parent
        self.field, self.batch_size = field, batch_size
        formats = sorted({s.format for s in self.sources})
        self.format = formats[0] if len(formats) == 1 else "+".join(formats)
        self.rows: list[int] = []

    def caption_batches(self, byte_range=None) -> Iterator[list[str]]:
        """Every shard's batches in order; records each shard's record count for pass 2."""
        self.rows = []
        for s in self.sources:
            n = 0
            for batch in s.caption_batches():
                n += len(batch)
                yield batch
            self.rows.append(n)

    def kept_records(self, keep: np.ndarray) -> Iterator[bytes]:
        """The kept records' JSON lines, shard after shard (pass 1 must have run)."""
        bounds = np.concatenate([[0], np.cumsum(self.rows)]).astype(np.int64)
        if len(self.rows) != len(self.sources) or bounds[-1] != len(keep):
            raise DataError(f"{self.path}: the shards changed while curating")
        for k, s in enumerate(self.sources):
            yield from s.kept_records(keep[bounds[k]:bounds[k + 1]])

    def sha256(self) -> str:
        """Hash of the shards' names and sha256 digests, in order."""
        h = hashlib.sha256()
        for s in self.sources:
            h.update(f"{s.path.name}\0{sha256_file(s.path)}\n".encode())
        return h.hexdigest()
