"""``curate``: match, count, balance and write a MetaCLIP-style curated subset of a caption pool.

Two streaming passes over the captions file. Pass 1 matches every caption and keeps only compact
int32 match lists (CSR). The entry counts then give the per-pair keep probabilities, one seeded
draw per pair decides, and pass 2 copies the kept records to ``curated.jsonl``.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fmlab.curate.balance import (
    check_threshold,
    entry_counts,
    entry_probabilities,
    keep_probabilities,
    kept_entry_counts,
    sample_keep,
    tail_proportion,
)
from fmlab.curate.matcher import EntryMatcher
from fmlab.curate.parallel import auto_workers, match_source
from fmlab.curate.plot import plot_entry_counts
from fmlab.curate.readers import CaptionSource
from fmlab.curate.shards import CaptionShards, caption_files
from fmlab.curate.text import load_entries
from fmlab.errors import ConfigError, DataError
from fmlab.utils.io import atomic_write, sha256_file, write_json

OUTPUTS = ("curated.jsonl", "stats.json", "entry_counts.csv", "entry_counts.png")


@dataclass
class CurateConfig:
    """One ``fmlab curate`` run (the CLI's flags, one field each).

    Attributes:
        captions: the caption pool (JSONL, optionally gzipped, CSV/TSV or Parquet): one file, or
            a folder / glob of shards, read in sorted order as one pool.
        entries: the metadata entries file, one entry per line.
        threshold: MetaCLIP's ``t``: entries matched more often are sub-sampled to ``t`` matches.
        out: the output folder.
        seed: seed of the per-pair keep draws.
        field: the record field holding the caption.
        format: the captions file format (``auto`` guesses from the suffix).
        ignore_case: match case-insensitively.
        batch_size: captions per matching batch.
        workers: processes for pass 1 (0: automatic), or Ray actors with ``engine="ray"``.
        top: entries listed in the report.
        engine: ``local`` or ``ray`` (:mod:`fmlab.curate.ray_engine`): the same output bytes.
        address: the Ray cluster to use (None: a local one, started and stopped by the run).
    """

    captions: Path
    entries: Path
    threshold: float
    out: Path
    seed: int = 0
    field: str = "caption"
    format: str = "auto"
    ignore_case: bool = False
    batch_size: int = 65536
    workers: int = 0  # processes for pass 1; 0 = automatic (JSONL >= 16 MiB: one per CPU)
    top: int = 20
    engine: str = "local"  # "local" (processes) or "ray" (Ray Data; same output bytes)
    address: str | None = None  # Ray cluster address; None starts a local cluster on demand


def curate(cfg: CurateConfig) -> dict[str, Any]:
    """Run the whole curation; returns the statistics also written to ``OUT/stats.json``.

    Args:
        cfg: the inputs (captions pool, entries, threshold ``t``, seed) and the output folder.

    Returns:
        The statistics (pair and match counts before/after, per-phase seconds, hashes).

    Raises:
        fmlab.errors.ConfigError: a bad threshold, seed, worker count or ``out``.
        fmlab.errors.DataError: unreadable inputs, or a pool with no captions (nothing is
            written then).
    """
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    threshold = check_threshold(cfg.threshold)
    if not isinstance(cfg.seed, (int, np.integer)) or cfg.seed < 0:
        raise ConfigError(f"seed must be an integer >= 0, got {cfg.seed!r}")
    if cfg.workers < 0:
        raise ConfigError(f"workers must be >= 0 (0 = automatic), got {cfg.workers}")
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a directory")
    if cfg.engine == "ray":  # fail before reading anything when Ray is missing
        from fmlab.utils.ray_cluster import import_ray

        import_ray()
    files = caption_files(cfg.captions)
    source = (CaptionSource(files[0], field=cfg.field, fmt=cfg.format, batch_size=cfg.batch_size)
              if len(files) == 1 and Path(cfg.captions).is_file() else
              CaptionShards(files, field=cfg.field, fmt=cfg.format, batch_size=cfg.batch_size))
    entries, duplicates = load_entries(cfg.entries, cfg.ignore_case)
    matcher = EntryMatcher(entries, ignore_case=cfg.ignore_case)
    seconds: dict[str, float] = {"load_entries": time.perf_counter() - t0}

    match_counts, keep, before, after, p, digest, workers = _passes(
        cfg, source, matcher, len(entries), threshold, seconds)

    t = time.perf_counter()
    _write_entry_counts(out / "entry_counts.csv", entries, before, after, p)
    plot_entry_counts(before, after, threshold, out / "entry_counts.png")
    seconds["report"] = time.perf_counter() - t
    seconds["total_wall"] = time.perf_counter() - t0
    seconds["cpu_main_process"] = time.process_time() - cpu0

    stats = _stats(cfg, source, entries, duplicates, threshold, match_counts, keep, before, after)
    stats["curated_sha256"] = digest.hexdigest()
    stats["workers"] = workers
    stats["engine"] = cfg.engine
    stats["seconds"] = {k: round(v, 3) for k, v in seconds.items()}
    write_json(out / "stats.json", stats)
    return stats


def _passes(cfg: CurateConfig, source: CaptionSource, matcher: EntryMatcher, n_entries: int,
            threshold: float, seconds: dict[str, float]) -> tuple:
    """Pass 1 (match), the balancing draw and pass 2 (write ``curated.jsonl``) on the engine."""
    out = Path(cfg.out)
    with _engine(cfg, source) as (engine, workers):
        # pass 1: match and count
        t = time.perf_counter()
        parts = engine.match(matcher) if engine is not None else None
        match_counts, match_ids = parts if parts is not None else match_source(source, matcher, workers)
        seconds["pass1_read_match"] = time.perf_counter() - t
        if len(match_counts) == 0:  # nothing to curate: refuse before writing anything (probe F15)
            raise DataError(f"{cfg.captions}: no captions (the pool holds no records)")

        # balance
        t = time.perf_counter()
        before = entry_counts(match_ids, n_entries)
        p = entry_probabilities(before, threshold)
        keep = sample_keep(keep_probabilities(match_counts, match_ids, p), cfg.seed)
        after = kept_entry_counts(match_counts, match_ids, keep, n_entries)
        seconds["balance"] = time.perf_counter() - t

        # pass 2: copy the kept records
        t = time.perf_counter()
        digest = hashlib.sha256()
        lines = engine.kept_records(keep) if engine is not None else source.kept_records(keep)
        with atomic_write(out / "curated.jsonl", "wb") as f:
            for line in lines:
                f.write(line)
                digest.update(line)
        seconds["pass2_write"] = time.perf_counter() - t

    return match_counts, keep, before, after, p, digest, workers


@contextlib.contextmanager
def _engine(cfg: CurateConfig, source: CaptionSource) -> Iterator[tuple[Any, int]]:
    """``(None, processes)`` for the local engine; ``(RayCurateEngine, actors)`` inside a Ray
    session (the cluster at ``cfg.address``, else a local one started for this run)."""
    if cfg.engine == "local":
        if cfg.address:
            raise ConfigError("--address is for --engine ray")
        yield None, auto_workers(source, cfg.workers)
        return
    if cfg.engine != "ray":
        raise ConfigError(f"unknown engine {cfg.engine!r}; use local or ray")
    from fmlab.curate.ray_engine import RayCurateEngine
    from fmlab.utils.ray_cluster import ray_session

    workers = cfg.workers or min(4, os.cpu_count() or 1)
    with ray_session(cfg.address, num_cpus=None if cfg.address else max(2, workers)) as ray:
        yield RayCurateEngine(ray, source, workers), workers


def _stats(
    cfg: CurateConfig,
    source: CaptionSource,
    entries: list[str],
    duplicates: int,
    threshold: float,
    match_counts: np.ndarray,
    keep: np.ndarray,
    before: np.ndarray,
    after: np.ndarray,
) -> dict[str, Any]:
    matched = before > 0
    head = before >= threshold
    top = np.argsort(-before, kind="stable")[: cfg.top]
    n_pairs = len(match_counts)
    return {
        "captions": str(cfg.captions),
        "captions_sha256": (source.sha256() if isinstance(source, CaptionShards)
                            else sha256_file(cfg.captions)),
        "captions_files": len(getattr(source, "sources", [source])),
        "captions_format": source.format,
        "caption_field": cfg.field,
        "entries_file": str(cfg.entries),
        "entries_sha256": sha256_file(cfg.entries),
        "threshold": threshold,
        "seed": int(cfg.seed),
        "ignore_case": cfg.ignore_case,
        "entries": len(entries),
        "duplicate_entries_dropped": duplicates,
        "entries_matched": int(matched.sum()),
        "head_entries": int(head.sum()),
        "tail_entries": int((matched & ~head).sum()),
        "unmatched_entries": int((~matched).sum()),
        "head_matches_before": int(before[head].sum()),
        "head_matches_after": int(after[head].sum()),
        "tail_matches_before": int(before[matched & ~head].sum()),
        "tail_matches_after": int(after[matched & ~head].sum()),
        "tail_proportion_before": tail_proportion(before, threshold),
        "matches_before": int(before.sum()),
        "matches_after": int(after.sum()),
        "pairs_total": n_pairs,
        "pairs_matched": int((match_counts > 0).sum()),
        "pairs_kept": int(keep.sum()),
        "kept_fraction": float(keep.sum() / n_pairs) if n_pairs else 0.0,
        "mean_entries_per_matched_pair": float(
            match_counts.sum() / max(1, (match_counts > 0).sum())
        ),
        "top_entries": [
            {"entry": entries[i], "before": int(before[i]), "after": int(after[i])}
            for i in top
            if before[i] > 0
        ],
    }


def _write_entry_counts(
    path: Path, entries: list[str], before: np.ndarray, after: np.ndarray, p: np.ndarray
) -> None:
    """One row per entry, in the entries file's order: entry, count_before, count_after, p_e."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["entry", "count_before", "count_after", "p"])
    w.writerows(zip(entries, before.tolist(), after.tolist(), (f"{x:.6g}" for x in p.tolist())))
    with atomic_write(path, "w") as f:
        f.write(buf.getvalue())


def output_paths(out: str | os.PathLike) -> list[Path]:
    return [Path(out) / name for name in OUTPUTS]
