"""FID: parity with the sqrtm formula, properties, and input errors."""

import numpy as np
import pytest
import scipy.linalg

from fmlab.errors import DataError
from fmlab.metrics import feature_statistics, fid, frechet_distance, intra_fid


def _fid_sqrtm(mu1, s1, mu2, s2):
    """The textbook formula with scipy's matrix square root (independent reference)."""
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    covmean = np.real(covmean)
    diff = mu1 - mu2
    return diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)


def _pair(rng, n1, n2, d):
    a = rng.standard_normal((n1, d)) @ rng.standard_normal((d, d)) * 0.3
    b = rng.standard_normal((n2, d)) @ rng.standard_normal((d, d)) * 0.3 + 0.2
    return a, b


@pytest.mark.parametrize("n1,n2,d", [(400, 417, 32), (300, 317, 64), (50, 300, 64),
                                      (300, 50, 64), (30, 47, 64)])
def test_frechet_distance_matches_sqrtm(n1, n2, d):
    # Full rank on both sides (Cholesky of S1), one side rank-deficient (Cholesky of the other)
    # and both rank-deficient (eigh factor).
    rng = np.random.default_rng(n1 + n2 + d)
    a, b = _pair(rng, n1, n2, d)
    mu1, s1 = np.mean(a, 0), np.cov(a, rowvar=False)
    mu2, s2 = np.mean(b, 0), np.cov(b, rowvar=False)
    ours = frechet_distance(mu1, s1, mu2, s2)
    ref = _fid_sqrtm(mu1, s1, mu2, s2)
    assert ours == pytest.approx(ref, rel=1e-6)
    assert frechet_distance(mu2, s2, mu1, s1) == pytest.approx(ours, rel=1e-7)


def test_feature_statistics_is_np_cov_float64():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((20, 5)).astype(np.float32)
    mu, sigma = feature_statistics(x)
    assert mu.dtype == np.float64 and sigma.dtype == np.float64
    np.testing.assert_allclose(mu, x.astype(np.float64).mean(0))
    xc = x.astype(np.float64) - x.astype(np.float64).mean(0)
    np.testing.assert_allclose(sigma, xc.T @ xc / (len(x) - 1))


def test_fid_symmetric_zero_on_self_and_shift():
    rng = np.random.default_rng(1)
    a, b = _pair(rng, 200, 250, 8)
    assert fid(a, b) == pytest.approx(fid(b, a), rel=1e-9)
    assert fid(a, a) == pytest.approx(0.0, abs=1e-9)
    # A pure mean shift by c adds exactly |c|^2.
    c = np.arange(8, dtype=np.float64) / 10
    assert fid(a, a + c) == pytest.approx(c @ c, rel=1e-8)


def test_fid_accepts_torch_tensors():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    a, b = _pair(rng, 100, 100, 6)
    assert fid(torch.from_numpy(a), torch.from_numpy(b)) == pytest.approx(fid(a, b))


def test_fid_errors_are_clear():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((10, 4))
    with pytest.raises(DataError, match="feature dimensions differ"):
        fid(a, rng.standard_normal((10, 5)))
    with pytest.raises(DataError, match="at least 2 samples"):
        fid(a, a[:1])
    bad = a.copy()
    bad[3, 1] = np.nan
    with pytest.raises(DataError, match="NaN first at row 3"):
        fid(bad, a)
    with pytest.raises(DataError, match="2-D"):
        fid(a.reshape(10, 2, 2), a)
    with pytest.raises(DataError, match="does not match mean"):
        frechet_distance(np.zeros(3), np.eye(4), np.zeros(3), np.eye(3))
    with pytest.raises(DataError, match="feature dimensions differ"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


def test_intra_fid_is_mean_of_per_class_fid():
    rng = np.random.default_rng(4)
    real = rng.standard_normal((90, 5))
    fake = rng.standard_normal((60, 5)) + 0.3
    yr = np.repeat([0, 1, 2], 30)
    yf = np.tile([2, 0, 1], 20)
    out = intra_fid(real, yr, fake, yf)
    expected = {c: fid(real[yr == c], fake[yf == c]) for c in (0, 1, 2)}
    assert out["per_class"] == pytest.approx(expected)
    assert out["mean"] == pytest.approx(np.mean(list(expected.values())))
    with pytest.raises(DataError, match="class 3 has 0 real"):
        intra_fid(real, yr, fake, yf, classes=[0, 3])
    with pytest.raises(DataError, match="fake labels"):
        intra_fid(real, yr, fake, yf[:-1])
