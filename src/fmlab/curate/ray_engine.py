"""``fmlab curate --engine ray``: both curation passes as Ray Data pipelines over input shards.

The pool is cut into units -- byte ranges starting at line starts for plain JSONL, row groups for
Parquet, the whole file otherwise (gzip, CSV) -- and a Ray Data pipeline maps them through a pool
of actors that each build the Aho-Corasick automaton once. Pass 1 returns each unit's int32 CSR
match lists; the driver puts them back in file order, so the entry counts, the keep
probabilities and the ONE seeded draw per pair are exactly the local engine's
(:mod:`fmlab.curate.balance` runs on the driver). Pass 2 sends each unit its slice of the keep
mask and writes the returned lines in unit order: ``curated.jsonl`` is byte-identical to the
local engine's for the same seed. Results stream back (``iter_rows``); the driver holds the
compact match lists (as the local engine does) and at most the out-of-order units' lines.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from fmlab.curate.matcher import EntryMatcher, as_int32
from fmlab.curate.readers import CaptionSource, _caption, _json_line
from fmlab.errors import FmlabError

UNIT_BYTES = 4 << 20  # a JSONL unit of about 4 MiB: enough units to balance, few enough to track


def units_of(source: CaptionSource, workers: int) -> list[tuple]:
    """Work units of ``source``: ``("range", a, b)``, ``("rg", i)`` or ``("all",)``; for a
    sharded pool, every shard's units with the shard's number in front."""
    if hasattr(source, "sources"):  # CaptionShards
        return [(k, *u) for k, s in enumerate(source.sources) for u in units_of(s, workers)]
    if source.splittable:
        size = source.path.stat().st_size
        n = min(4096, max(2 * workers, math.ceil(size / UNIT_BYTES)))
        return [("range", a, b) for a, b in source.byte_ranges(n)] or [("all",)]
    if source.format == "parquet":
        return [("rg", i) for i in range(source._parquet().num_row_groups)] or [("all",)]
    return [("all",)]


def _unit_captions(source: CaptionSource, unit: tuple) -> Iterator[list[str]]:
    if unit[0] == "range":
        return source.caption_batches((unit[1], unit[2]))
    if unit[0] == "rg":
        values = source._parquet().read_row_group(unit[1], columns=[source.field]).column(0)
        values = values.to_pylist()
        return iter([[_caption(v, f"{source.path}: row group {unit[1]}", source.field) for v in values]])
    return source.caption_batches()


def _unit_kept(source: CaptionSource, unit: tuple, keep: np.ndarray) -> list[bytes]:
    if unit[0] == "range":
        lines = [line for _, line in source._jsonl_lines((unit[1], unit[2]))]
        return [ln if ln.endswith(b"\n") else ln + b"\n" for ln, k in zip(lines, keep) if k]
    if unit[0] == "rg":
        import pyarrow as pa

        table = source._parquet().read_row_group(unit[1])
        return [_json_line(r) for r in table.filter(pa.array(keep.astype(bool))).to_pylist()]
    return list(source.kept_records(keep))


class _Worker:
    """A Ray actor: the caption source and the automaton, built once per actor."""

    def __init__(self, source_args: list[dict], entries: list[str], ignore_case: bool,
                 units: list[tuple]) -> None:
        self.sources = [CaptionSource(**a) for a in source_args]
        self.matcher = EntryMatcher(entries, ignore_case=ignore_case) if entries else None
        self.units = units

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from array import array

        out: dict[str, list] = {"unit": [], "counts": [], "ids": [], "lines": [], "error": []}
        for j, u in enumerate(batch["unit"].tolist()):
            counts, ids, lines, error = array("i"), array("i"), b"", ""
            try:
                shard, unit = self.units[u][0], self.units[u][1:]
                if "keep" in batch:  # pass 2
                    keep = np.frombuffer(batch["keep"][j], dtype=bool)
                    lines = b"".join(_unit_kept(self.sources[shard], unit, keep))
                else:
                    for captions in _unit_captions(self.sources[shard], unit):
                        self.matcher.match_many(captions, counts, ids)
            except FmlabError as e:
                error = str(e)
            out["unit"].append(u)
            out["counts"].append(counts.tobytes())
            out["ids"].append(ids.tobytes())
            out["lines"].append(lines)
            out["error"].append(error)
        return {k: np.asarray(v, dtype=np.int64 if k == "unit" else object) for k, v in out.items()}


class RayCurateEngine:
    """Pass 1 and pass 2 of :func:`fmlab.curate.curate` on Ray (see the module docstring).

    Args:
        ray: the initialised ``ray`` module (:func:`fmlab.utils.ray_cluster.ray_session`).
        source: the caption pool.
        workers: actors (each one CPU).
    """

    def __init__(self, ray: Any, source: CaptionSource, workers: int) -> None:
        from fmlab.utils.ray_cluster import quiet_data_context

        self.ray, self.source, self.workers = ray, source, max(1, int(workers))
        quiet_data_context(ray)
        sources = getattr(source, "sources", None)
        self.units = units_of(source, self.workers) if sources else [(0, *u) for u in units_of(source, self.workers)]
        self.unit_rows: list[int] = []
        self.args = [{"path": str(s.path), "field": s.field, "fmt": s.format, "batch_size": s.batch_size}
                     for s in (sources or [source])]

    def _run(self, items: list[dict], entries: list[str], ignore_case: bool) -> Iterator[dict]:
        ds = self.ray.data.from_items(items, override_num_blocks=max(1, len(items)))
        ds = ds.map_batches(_Worker, batch_size=1, num_cpus=1,
                            compute=self.ray.data.ActorPoolStrategy(size=self.workers),
                            fn_constructor_args=(self.args, entries, ignore_case, self.units))
        return ds.iter_rows()

    def match(self, matcher: EntryMatcher) -> tuple[np.ndarray, np.ndarray] | None:
        """``(match_counts, match_ids)`` in file order; None when a unit met bad input (the
        caller then reruns locally, which raises the error with its exact line)."""
        items = [{"unit": u} for u in range(len(self.units))]
        parts: dict[int, tuple[bytes, bytes]] = {}
        for row in self._run(items, matcher.entries, matcher.ignore_case):
            if row["error"]:
                return None
            parts[int(row["unit"])] = (row["counts"], row["ids"])
        counts = [np.frombuffer(parts[u][0], dtype=np.intc) for u in range(len(self.units))]
        ids = [np.frombuffer(parts[u][1], dtype=np.intc) for u in range(len(self.units))]
        self.unit_rows = [len(c) for c in counts]
        return (np.concatenate(counts).astype(np.int32) if counts else as_int32([]),
                np.concatenate(ids).astype(np.int32) if ids else as_int32([]))

    def kept_records(self, keep: np.ndarray) -> Iterator[bytes]:
        """The kept records' JSON lines, in file order (out-of-order units wait in memory)."""
        from fmlab.errors import DataError

        bounds = np.concatenate([[0], np.cumsum(self.unit_rows)]).astype(np.int64)
        items = [{"unit": u, "keep": keep[bounds[u]:bounds[u + 1]].astype(bool).tobytes()}
                 for u in range(len(self.units))]
        waiting: dict[int, bytes] = {}
        nxt = 0
        for row in self._run(items, [], False):
            if row["error"]:
                raise DataError(row["error"])
            waiting[int(row["unit"])] = row["lines"]
            while nxt in waiting:
                yield waiting.pop(nxt)
                nxt += 1
