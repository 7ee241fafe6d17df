"""Pass 1 (read + match) over byte ranges of a JSONL pool in worker processes.

Matching is pure-Python-driven CPU work, so on a multi-core machine the pool is split into
contiguous byte ranges at line starts, each range is matched in a forked worker (which shares the
automaton copy-on-write), and the per-range CSR arrays are concatenated in file order: the result
is identical to the sequential pass. A worker that meets bad input gives up and the caller reruns
sequentially, which raises the error with the exact line number.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from array import array

import numpy as np

from fmlab.curate.matcher import EntryMatcher, as_int32
from fmlab.curate.readers import CaptionSource
from fmlab.errors import FmlabError

MIN_PARALLEL_BYTES = 16 << 20  # below this, starting workers costs more than it saves

_JOB: tuple[CaptionSource, EntryMatcher] | None = None


def auto_workers(source: CaptionSource, requested: int = 0) -> int:
    """``requested`` if > 0, else one per CPU (at most 4) for big splittable files, else 1."""
    if requested > 0:
        return requested if source.splittable and _fork_ok() else 1
    if not source.splittable or not _fork_ok() or source.path.stat().st_size < MIN_PARALLEL_BYTES:
        return 1
    return max(
        1,
        min(
            4,
            len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else os.cpu_count() or 1,
        ),
    )


def _fork_ok() -> bool:
    return "fork" in mp.get_all_start_methods()


def _match_range(byte_range: tuple[int, int]) -> tuple[bytes, bytes] | None:
    source, matcher = _JOB  # type: ignore[misc]
    counts, ids = array("i"), array("i")
    try:
        for batch in source.caption_batches(byte_range):
            matcher.match_many(batch, counts, ids)
    except FmlabError:
        return None
    return counts.tobytes(), ids.tobytes()


def match_source(
    source: CaptionSource, matcher: EntryMatcher, workers: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """``(match_counts, match_ids)`` of every record of ``source`` (int32 CSR, file order)."""
    global _JOB
    ranges = source.byte_ranges(workers) if workers > 1 and source.splittable else []
    if len(ranges) > 1:
        _JOB = (source, matcher)
        try:
            with mp.get_context("fork").Pool(len(ranges)) as pool:
                parts = pool.map(_match_range, ranges, chunksize=1)
        finally:
            _JOB = None
        if all(p is not None for p in parts):
            counts = np.concatenate([np.frombuffer(c, dtype=np.intc) for c, _ in parts]).astype(
                np.int32
            )
            ids = np.concatenate([np.frombuffer(i, dtype=np.intc) for _, i in parts]).astype(
                np.int32
            )
            return counts, ids
    counts_buf, ids_buf = array("i"), array("i")
    for batch in source.caption_batches():
        matcher.match_many(batch, counts_buf, ids_buf)
    return as_int32(counts_buf), as_int32(ids_buf)
