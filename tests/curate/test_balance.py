"""Balancing: p_e, the keep probability of a pair, and kept counts per entry in expectation."""

import math

import numpy as np
import pytest

from fmlab.curate import (
    check_threshold,
    entry_counts,
    entry_probabilities,
    keep_probabilities,
    kept_entry_counts,
    sample_keep,
    tail_proportion,
)
from fmlab.errors import ConfigError


def test_entry_probabilities():
    c = np.array([0, 1, 10, 20, 40, 1000])
    assert entry_probabilities(c, 20).tolist() == [1, 1, 1, 1, 0.5, 0.02]


@pytest.mark.parametrize("t", [0, -1, float("nan"), float("inf"), "x"])
def test_bad_threshold(t):
    with pytest.raises(ConfigError, match="threshold"):
        check_threshold(t)


def test_keep_probabilities_match_a_per_pair_product():
    rng = np.random.default_rng(1)
    n_entries, n_pairs = 30, 500
    lists = [rng.choice(n_entries, size=rng.integers(0, 5), replace=False) for _ in range(n_pairs)]
    counts = np.array([len(x) for x in lists], dtype=np.int32)
    ids = np.concatenate(lists).astype(np.int32)
    p = rng.uniform(0, 1, n_entries)
    p[:3] = 1.0
    expected = [1 - math.prod(1 - p[e] for e in x) if len(x) else 0.0 for x in lists]
    np.testing.assert_allclose(keep_probabilities(counts, ids, p), expected, rtol=1e-12, atol=1e-15)


def test_keep_probability_block_boundaries(monkeypatch):
    import fmlab.curate.balance as bal

    monkeypatch.setattr(bal, "_BLOCK", 7)
    counts = np.array([2, 0, 3, 1, 0, 0, 2, 1, 4, 1, 0, 2], dtype=np.int32)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 5, size=counts.sum()).astype(np.int32)
    p = np.array([0.1, 0.2, 0.5, 0.9, 0.05])
    off = np.concatenate([[0], np.cumsum(counts)])
    expected = [1 - np.prod(1 - p[ids[off[i] : off[i + 1]]]) for i in range(len(counts))]
    np.testing.assert_allclose(bal.keep_probabilities(counts, ids, p), expected, rtol=1e-12)


def test_kept_counts_match_min_c_t_in_expectation():
    # pairs matching exactly one entry each: kept_e ~ Binomial(c_e, p_e), mean min(c_e, t)
    c = np.array([6000, 3000, 1200, 700, 400, 300, 250, 100, 30, 5])
    t = 300
    ids = np.repeat(np.arange(len(c)), c).astype(np.int32)
    ids = np.random.default_rng(123).permutation(ids)
    counts = np.ones(len(ids), dtype=np.int32)
    before = entry_counts(ids, len(c))
    assert before.tolist() == c.tolist()
    p = entry_probabilities(before, t)
    kp = keep_probabilities(counts, ids, p)
    mean = np.minimum(c, t)
    sd = np.sqrt(c * p * (1 - p))
    totals = np.zeros(len(c))
    for seed in range(5):
        after = kept_entry_counts(counts, ids, sample_keep(kp, seed), len(c))
        assert np.all(np.abs(after - mean) <= 4 * sd), (after, mean, sd)
        assert np.all(after[c <= t] == c[c <= t])  # the tail is kept whole
        totals += after
    # the mean of 5 seeds: std shrinks by sqrt(5)
    assert np.all(np.abs(totals / 5 - mean) <= 4 * sd / np.sqrt(5) + 1e-9)


def test_multi_entry_pairs_match_independent_draws():
    """v1 keeps a pair when any per-entry Bernoulli(p_e) succeeds: same law as the closed form."""
    p = np.array([0.3, 0.5, 0.1])
    counts = np.full(20000, 2, dtype=np.int32)
    ids = np.tile(np.array([0, 1], dtype=np.int32), 20000)
    kp = keep_probabilities(counts, ids, p)
    rng = np.random.default_rng(7)
    draws = (rng.random((20000, 2)) < p[[0, 1]]).any(axis=1)
    rate_formula = sample_keep(kp, 3).mean()
    target = 1 - 0.7 * 0.5
    sd = math.sqrt(target * (1 - target) / 20000)
    assert abs(rate_formula - target) < 4 * sd and abs(draws.mean() - target) < 4 * sd


def test_unmatched_pairs_are_dropped_and_seed_reproducible():
    counts = np.array([0, 1, 0, 1], dtype=np.int32)
    ids = np.array([0, 0], dtype=np.int32)
    kp = keep_probabilities(counts, ids, np.array([1.0]))
    assert kp.tolist() == [0, 1, 0, 1]
    big = np.random.default_rng(0).random(1000)
    assert np.array_equal(sample_keep(big, 5), sample_keep(big, 5))
    assert not np.array_equal(sample_keep(big, 5), sample_keep(big, 6))


def test_tail_proportion():
    assert tail_proportion(np.array([1, 2, 30, 67]), 10) == pytest.approx(0.03)
    assert tail_proportion(np.zeros(3), 10) == 0.0
