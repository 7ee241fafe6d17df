"""PRDC against the prdc package's definitions written out with full distance matrices."""

import numpy as np
import pytest

from fmlab.errors import DataError
from fmlab.metrics import intra_prdc, prdc


def _dists(a, b):
    return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))


def _kth(d, k):
    # (k+1)-th smallest per row, self (0) included, as the reference does.
    return np.sort(d, axis=1)[:, k]


def _prdc_reference(real, fake, k):
    r_nnd = _kth(_dists(real, real), k)
    f_nnd = _kth(_dists(fake, fake), k)
    d_rf = _dists(real, fake)  # (N, M)
    precision = (d_rf < r_nnd[:, None]).any(axis=0).mean()
    recall = (d_rf < f_nnd[None, :]).any(axis=1).mean()
    density = (1.0 / k) * (d_rf < r_nnd[:, None]).sum(axis=0).mean()
    coverage = (d_rf.min(axis=1) < r_nnd).mean()
    return {"precision": precision, "recall": recall, "density": density, "coverage": coverage}


@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("block_bytes", [64, 1 << 20])  # tiny blocks: many partial blocks
def test_prdc_matches_reference(k, block_bytes):
    rng = np.random.default_rng(k)
    real = rng.standard_normal((120, 8)) + 5.0
    fake = rng.standard_normal((97, 8)) * 1.4 + 5.3
    ours = prdc(real, fake, k=k, block_bytes=block_bytes)
    ref = _prdc_reference(real, fake, k)
    for key in ref:
        assert ours[key] == pytest.approx(ref[key], abs=1e-12), key


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_prdc_exact_ties_on_quantised_features(dtype):
    # Integer features with duplicates: distances tie exactly, and the strict `<` must
    # resolve every tie as the reference does (also in float32, where integers are exact).
    rng = np.random.default_rng(9)
    real = np.repeat(rng.integers(0, 6, (30, 4)), 2, axis=0).astype(np.float64) + 100.0
    fake = np.concatenate([real[:20], rng.integers(0, 6, (25, 4)) + 100.0])
    for k in (1, 3):
        ref = _prdc_reference(real, fake, k)
        assert prdc(real, fake, k=k, dtype=dtype) == pytest.approx(ref, abs=1e-12)


def test_prdc_float32_close_to_float64():
    rng = np.random.default_rng(10)
    real, fake = rng.standard_normal((300, 6)), rng.standard_normal((280, 6)) * 1.1
    f64, f32 = prdc(real, fake), prdc(real, fake, dtype="float32")
    assert f32 == pytest.approx(f64, abs=0.02)


def test_prdc_separated_sets():
    rng = np.random.default_rng(5)
    real = rng.standard_normal((50, 3))
    far = prdc(real, real + 100.0, k=5)
    assert far == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


def test_prdc_errors():
    rng = np.random.default_rng(6)
    with pytest.raises(DataError, match="at least 6 samples"):
        prdc(rng.standard_normal((5, 3)), rng.standard_normal((50, 3)), k=5)
    with pytest.raises(DataError, match="feature dimensions differ"):
        prdc(rng.standard_normal((50, 3)), rng.standard_normal((50, 2)))
    with pytest.raises(DataError, match="dtype"):
        prdc(rng.standard_normal((50, 3)), rng.standard_normal((50, 3)), dtype="float16")


def test_intra_prdc_is_the_reference_prdc_of_each_class():
    rng = np.random.default_rng(7)
    yr, yf = rng.integers(0, 3, 150), rng.integers(0, 3, 120)
    real = rng.standard_normal((150, 6)) + 2.0 * yr[:, None]
    fake = rng.standard_normal((120, 6)) * 1.2 + 2.0 * yf[:, None] + 0.3
    out = intra_prdc(real, yr, fake, yf, k=3)
    for c in range(3):
        ref = _prdc_reference(real[yr == c], fake[yf == c], 3)
        for key in ref:
            assert out["per_class"][c][key] == pytest.approx(ref[key], abs=1e-12), (c, key)
    for key in ("precision", "recall", "density", "coverage"):
        assert out[key] == pytest.approx(np.mean([out["per_class"][c][key] for c in range(3)]))


def test_intra_prdc_measures_diversity_and_label_fit_per_class():
    rng = np.random.default_rng(8)
    centres = np.array([[0.0, 0.0], [6.0, 0.0], [0.0, 6.0]])
    yr = np.repeat(np.arange(3), 200)
    real = centres[yr] + rng.standard_normal((600, 2))
    yf = np.repeat(np.arange(3), 100)
    fake_diverse = centres[yf] + rng.standard_normal((300, 2))
    # each class generated as (nearly) one point where the class is: realistic, not diverse
    fake_collapsed = centres[yf] + 0.01 * rng.standard_normal((300, 2))
    diverse = intra_prdc(real, yr, fake_diverse, yf, k=5)
    collapsed = intra_prdc(real, yr, fake_collapsed, yf, k=5)
    assert diverse["recall"] > 0.5 and collapsed["recall"] < 0.1
    assert collapsed["precision"] > 0.9
    # the same diverse fakes under the wrong labels: pooled PRDC cannot tell, per-class can
    swapped = intra_prdc(real, yr, fake_diverse, (yf + 1) % 3, k=5)
    assert swapped["precision"] < 0.1 < diverse["precision"]
    assert prdc(real, fake_diverse, k=5)["precision"] > 0.5


def test_intra_prdc_errors():
    rng = np.random.default_rng(9)
    real, fake = rng.standard_normal((40, 3)), rng.standard_normal((30, 3))
    yr, yf = np.repeat([0, 1], 20), np.array([0] * 27 + [1] * 3)
    with pytest.raises(DataError, match="intra-PRDC: class 1 has 20 real and 3 fake"):
        intra_prdc(real, yr, fake, yf, k=5)
    with pytest.raises(DataError, match="fake labels: expected 30 labels"):
        intra_prdc(real, yr, fake, yf[:10], k=3)
    with pytest.raises(DataError, match="feature dimensions differ"):
        intra_prdc(real, yr, fake[:, :2], yf, k=3)
