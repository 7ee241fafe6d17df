"""MetaCLIP balancing: cap every entry at about ``t`` matched pairs.

``p_e = t / max(c_e, t)``: tail entries (``c_e < t``) keep all their pairs, head entries keep
about ``t``. A pair matching entries ``E`` is kept with probability ``1 - prod_{e in E}(1 - p_e)``
-- the chance that at least one independent per-entry Bernoulli draw succeeds (MetaCLIP's
``balance_sampling``), computed in closed form as in ``curate.py``. Pairs matching nothing are
dropped. The product is summed in log space (``log1p``) so tiny ``p_e`` keep their precision.
"""

from __future__ import annotations

import math

import numpy as np

from fmlab.errors import ConfigError

_BLOCK = 1 << 18  # pairs per block: temporaries stay O(block), whatever the pool size


def check_threshold(t: float) -> float:
    """``t`` must be a finite number > 0."""
    try:
        t = float(t)
    except (TypeError, ValueError):
        raise ConfigError(f"threshold must be a number > 0, got {t!r}") from None
    if not math.isfinite(t) or t <= 0:
        raise ConfigError(f"threshold must be a finite number > 0, got {t}")
    return t


def entry_counts(match_ids: np.ndarray, n_entries: int) -> np.ndarray:
    """``c_e``: the number of pairs matching each entry (ids are distinct within a pair)."""
    return np.bincount(match_ids, minlength=n_entries).astype(np.int64)


def entry_probabilities(counts: np.ndarray, t: float) -> np.ndarray:
    """``p_e = t / max(c_e, t)`` (1 for tail and unmatched entries)."""
    t = check_threshold(t)
    return t / np.maximum(np.asarray(counts, dtype=np.float64), t)


def _offsets(match_counts: np.ndarray) -> np.ndarray:
    off = np.zeros(len(match_counts) + 1, dtype=np.int64)
    np.cumsum(match_counts, out=off[1:])
    return off


def keep_probabilities(
    match_counts: np.ndarray, match_ids: np.ndarray, p: np.ndarray
) -> np.ndarray:
    """Per pair ``1 - prod_{e in E}(1 - p_e)``; 0 for pairs without a match (CSR input)."""
    match_counts = np.asarray(match_counts)
    n = len(match_counts)
    off = _offsets(match_counts)
    if off[-1] != len(match_ids):
        raise ValueError(f"match_counts sum to {off[-1]} but there are {len(match_ids)} match ids")
    with np.errstate(divide="ignore"):
        log_miss = np.log1p(-p)  # -inf where p_e == 1
    out = np.empty(n, dtype=np.float64)
    for start in range(0, n, _BLOCK):
        stop = min(start + _BLOCK, n)
        a, b = off[start], off[stop]
        owner = np.repeat(np.arange(stop - start, dtype=np.int32), match_counts[start:stop])
        total = np.bincount(owner, weights=log_miss[match_ids[a:b]], minlength=stop - start)
        out[start:stop] = -np.expm1(total)
    return out


def sample_keep(keep_prob: np.ndarray, seed: int) -> np.ndarray:
    """Bernoulli draw per pair with a seeded generator: one uniform per pair, in input order."""
    u = np.random.default_rng(seed).random(len(keep_prob))
    return u < keep_prob


def kept_entry_counts(
    match_counts: np.ndarray, match_ids: np.ndarray, keep: np.ndarray, n_entries: int
) -> np.ndarray:
    """Entry counts over the kept pairs only."""
    incidence_keep = np.repeat(np.asarray(keep, dtype=bool), match_counts)
    return np.bincount(match_ids[incidence_keep], minlength=n_entries).astype(np.int64)


def tail_proportion(counts: np.ndarray, t: float) -> float:
    """MetaCLIP's ``t_to_p``: the share of matches held by tail entries (``c_e < t``)."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    return float(counts[counts < t].sum() / total) if total > 0 else 0.0
