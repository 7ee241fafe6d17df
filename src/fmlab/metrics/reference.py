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
    """Mean and covariance of a reference split (and per class, when asked for).

    Attributes:
        mu: (D,) mean.
        sigma: (D, D) covariance.
        n: number of samples used.
        key: the dict whose hash names the cache file (:func:`reference_key`).
        path: the cache file, or None.
        from_cache: whether the numbers were read from the cache.
        per_class: ``{class: (mu, sigma)}`` for classes with two or more samples.
        class_counts: ``{class: number of samples}``.
    """

    mu: np.ndarray
    sigma: np.ndarray
    n: int
    key: dict
    path: Path | None = None
    from_cache: bool = False
    per_class: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    class_counts: dict[int, int] = field(default_factory=dict)


def select_indices(n_total: int, n: int | None, seed: int | None) -> tuple[np.ndarray, str]:
    """Which samples to use: all, the first ``n``, or ``n`` drawn with ``seed`` (sorted).

    Args:
        n_total: size of the split.
        n: how many to use (2..n_total), or None for all.
        seed: None for the first ``n``, else the seed of a random draw.

    Returns:
        ``(indices, description)``; the description goes into the protocol.

    Raises:
        DataError: ``n`` outside 2..n_total.

    Examples:
        >>> select_indices(10, 3, None)
        (array([0, 1, 2]), 'first')
        >>> select_indices(10, 3, 0)[1]
        'random(seed=0)'
    """
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
    """The dict whose hash names the cache file.

    Args:
        extractor: a FeatureExtractor (its protocol is part of the key).
        split: the ImageSplit (its content hash and name are part of the key).
        n: samples used, as in :func:`select_indices`.
        seed: selection seed, as in :func:`select_indices`.
        per_class: whether per-class statistics are kept.

    Returns:
        A JSON-ready dict.
    """
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

    Args:
        extractor: a :class:`~fmlab.metrics.FeatureExtractor`.
        split: an fmlab ImageSplit (``len``, ``name``, ``content_hash``, ``iter_batches``,
            ``labels``).
        n: how many samples (see :func:`select_indices`); None for all.
        seed: None for the first ``n``, else a random draw with this seed.
        per_class: also keep per-label statistics (for intra-FID); the split needs labels.
        cache: read and write ``cache_dir()/ref_stats/<hash>.npz``.

    Returns:
        A :class:`ReferenceStats`.

    Raises:
        DataError: a bad ``n``, or ``per_class`` on a split without labels.

    Examples:
        >>> import warnings
        >>> import numpy as np
        >>> from fmlab.data.sources import ArraySplit
        >>> from fmlab.metrics import create_extractor
        >>> images = np.random.default_rng(0).integers(0, 256, (8, 28, 28), dtype=np.uint8)
        >>> split = ArraySplit(images, name="test", labels=np.arange(8) % 2, class_names=None,
        ...                    content_hash="toy", origin="example")
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")
        ...     ext = create_extractor("lenet5_mnist")
        >>> stats = reference_statistics(ext, split, n=6, per_class=True, cache=False)
        >>> stats.n, stats.mu.shape, sorted(stats.class_counts.items())
        (6, (84,), [(0, 3), (1, 3)])
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
