"""Cached reference statistics: (mu, sigma) of a real split under one extractor.

Running an extractor over 50k real images is the slow part of FID; the statistics depend only
on the extractor protocol, the split's content, the split name and which samples were used. The
cache key hashes exactly those, and the file stores the key next to the numbers, so a stale or
colliding file is detected rather than silently used. Files are written atomically under
``cache_dir()/ref_stats/<hash>.npz`` (no pickles).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fmlab.errors import DataError
from fmlab.metrics.streaming import FeatureStats
from fmlab.utils.io import atomic_write, cache_dir, sha256_json

FORMAT_VERSION = 1


@dataclass
class ReferenceStats:
    """Mean and covariance of a reference split (and per class, when asked for)."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int
    key: dict
    path: Path | None = None
    from_cache: bool = False
    per_class: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    class_counts: dict[int, int] = field(default_factory=dict)


def select_indices(n_total: int, n: int | None, seed: int | None) -> tuple[np.ndarray, str]:
    """Which samples to use: all, the first ``n``, or ``n`` drawn with ``seed`` (sorted)."""
    if n is None:
        return np.arange(n_total), "all"
    if not 2 <= n <= n_total:
        raise DataError(f"reference: n={n} must be between 2 and the split size {n_total}")
    if seed is None:
        return np.arange(n), "first"
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_total, n, replace=False)), f"random(seed={seed})"


def reference_key(extractor: Any, split: Any, n: int | None = None, seed: int | None = None,
                  per_class: bool = False) -> dict:
    """The dict whose hash names the cache file."""
    _, selection = select_indices(len(split), n, seed)
    return {
        "format": FORMAT_VERSION,
        "extractor": extractor.protocol,
        "content_hash": split.content_hash,
        "split": split.name,
        "n": len(split) if n is None else int(n),
        "selection": selection,
        "per_class": bool(per_class),
    }


def reference_statistics(
    extractor: Any,
    split: Any,
    n: int | None = None,
    seed: int | None = None,
    per_class: bool = False,
    cache: bool = True,
) -> ReferenceStats:
    """(mu, sigma) of ``split`` under ``extractor``, from the cache when it is there.

    ``split`` is an fmlab ImageSplit (``len``, ``name``, ``content_hash``, ``iter_batches``,
    ``labels``). ``n``/``seed`` pick the samples (see :func:`select_indices`); ``per_class``
    also keeps per-label statistics for intra-FID.
    """
    key = reference_key(extractor, split, n, seed, per_class)
    path = cache_dir() / "ref_stats" / f"{sha256_json(key)}.npz"
    if cache and path.is_file():
        stats = _load(path, key)
        if stats is not None:
            return stats
    idx, _ = select_indices(len(split), n, seed)
    labels = None
    if per_class:
        if split.labels is None:
            raise DataError(f"reference split {split.name!r} has no labels: no per-class stats")
        labels = np.asarray(split.labels)
    total, classes = FeatureStats(), {}
    for batch_idx, feats, _ in extractor.iter_split(split, idx):
        total.update(feats)
        if labels is not None:
            y = labels[batch_idx]
            for c in np.unique(y).tolist():
                classes.setdefault(int(c), FeatureStats()).update(feats[y == c])
    mu, sigma = total.compute()
    stats = ReferenceStats(mu, sigma, total.n, key, path,
                           per_class={c: s.compute() for c, s in classes.items() if s.n >= 2},
                           class_counts={c: s.n for c, s in classes.items()})
    if cache:
        _save(path, stats)
    return stats


def _save(path: Path, s: ReferenceStats) -> None:
    ids = sorted(s.per_class)
    arrays = {
        "key": np.array(json.dumps(s.key, sort_keys=True)),
        "mu": s.mu, "sigma": s.sigma, "n": np.array(s.n),
        "class_ids": np.array(ids, dtype=np.int64),
        "class_counts": np.array([s.class_counts[c] for c in ids], dtype=np.int64),
    }
    if ids:
        arrays["class_mu"] = np.stack([s.per_class[c][0] for c in ids])
        arrays["class_sigma"] = np.stack([s.per_class[c][1] for c in ids])
    with atomic_write(path, "wb") as f:
        np.savez(f, **arrays)


def _load(path: Path, key: dict) -> ReferenceStats | None:
    """The cached stats, or None when the file does not hold this key (then it is recomputed)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if json.loads(str(z["key"])) != json.loads(json.dumps(key, sort_keys=True)):
                return None
            ids = z["class_ids"].tolist()
            per_class = {c: (z["class_mu"][i], z["class_sigma"][i]) for i, c in enumerate(ids)}
            counts = dict(zip(ids, z["class_counts"].tolist(), strict=True))
            return ReferenceStats(z["mu"], z["sigma"], int(z["n"]), key, path, True,
                                  per_class, counts)
    except (OSError, KeyError, ValueError):
        return None
