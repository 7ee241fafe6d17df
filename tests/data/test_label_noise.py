"""Symmetric label noise: measured flip rate ≈ p, flips always change the class, seeded, nested."""

from __future__ import annotations

import numpy as np
import pytest

from fmlab.data.label_noise import symmetric_label_noise
from fmlab.errors import ConfigError

N, C = 200_000, 10


@pytest.fixture(scope="module")
def clean():
    return np.random.default_rng(0).integers(0, C, size=N)


@pytest.mark.parametrize("p", [0.05, 0.1, 0.2, 0.3, 0.9])
def test_flip_rate_and_uniform_other_class(clean, p):
    noisy = symmetric_label_noise(clean, p, C, seed=3)
    flipped = noisy != clean
    se = np.sqrt(p * (1 - p) / N)
    assert abs(flipped.mean() - p) < 5 * se  # the rate is p itself (different-class convention)
    # a flipped label is uniform over the C - 1 other classes: offsets 1..C-1 equally often
    offsets = (noisy[flipped] - clean[flipped]) % C
    counts = np.bincount(offsets, minlength=C)
    assert counts[0] == 0
    expected = flipped.sum() / (C - 1)
    assert np.all(np.abs(counts[1:] - expected) < 6 * np.sqrt(expected))
    assert noisy.min() >= 0 and noisy.max() < C


def test_seeded_nested_and_p_zero(clean):
    a = symmetric_label_noise(clean, 0.2, C, seed=7)
    np.testing.assert_array_equal(a, symmetric_label_noise(clean, 0.2, C, seed=7))
    assert np.mean(a != symmetric_label_noise(clean, 0.2, C, seed=8)) > 0.2
    small = symmetric_label_noise(clean, 0.1, C, seed=7)
    changed = small != clean
    assert np.all(a[changed] == small[changed])  # the p=0.1 flips are among the p=0.2 ones
    before = clean.copy()
    zero = symmetric_label_noise(clean, 0.0, C, seed=7)
    np.testing.assert_array_equal(zero, clean)
    np.testing.assert_array_equal(clean, before)  # the input is never modified
    assert zero is not clean


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5, float("nan")])
def test_bad_p_is_refused_by_name(p):
    with pytest.raises(ConfigError, match="data.label_noise"):
        symmetric_label_noise(np.arange(4), p, 4, key="data.label_noise")


def test_needs_two_classes_and_labels_in_range():
    with pytest.raises(ConfigError, match="2 classes"):
        symmetric_label_noise(np.zeros(4, dtype=int), 0.1, 1)
    with pytest.raises(ConfigError, match="labels must lie"):
        symmetric_label_noise(np.array([0, 5]), 0.1, 3)
