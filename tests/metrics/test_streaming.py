"""Streaming wrappers give the same numbers as the one-shot functions."""

import numpy as np
import pytest

from fmlab.errors import DataError
from fmlab.metrics import fid, inception_score, intra_fid, kid, prdc
from fmlab.metrics.streaming import (
    FeatureStats,
    StreamingFID,
    StreamingIntraFID,
    StreamingIS,
    StreamingKID,
    StreamingPRDC,
)


def _batches(x, rng, sizes=(1, 7, 0, 33)):
    out, i = [], 0
    while i < len(x):
        s = int(rng.choice(sizes))
        out.append(x[i:i + s])
        i += s
    return out


def test_feature_stats_match_np_cov_under_a_large_offset():
    # Raw sums of x and x x^T would lose ~12 digits here; the pairwise update must not.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 6)) + 1e6
    st = FeatureStats()
    for b in _batches(x, rng):
        st.update(b)
    mu, sigma = st.compute()
    assert st.n == 500
    np.testing.assert_allclose(mu, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(x, rowvar=False), rtol=1e-7, atol=1e-9)


def test_feature_stats_merge_and_errors():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((60, 3))
    a, b = FeatureStats().update(x[:25]), FeatureStats().update(x[25:])
    mu, sigma = a.merge(b).compute()
    np.testing.assert_allclose(mu, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(x, rowvar=False), rtol=1e-12)
    with pytest.raises(DataError, match="at least 2 samples"):
        FeatureStats().update(x[:1]).compute()
    with pytest.raises(DataError, match="feature dimensions differ"):
        FeatureStats().update(x).update(rng.standard_normal((4, 5)))


def test_streaming_fid_equals_fid_and_accepts_reference_stats():
    rng = np.random.default_rng(2)
    real, fake = rng.standard_normal((300, 5)), rng.standard_normal((200, 5)) * 1.2 + 0.1
    m = StreamingFID()
    for b in _batches(real, rng):
        m.update(b, real=True)
    for b in _batches(fake, rng):
        m.update(b)
    assert m.compute() == pytest.approx(fid(real, fake), rel=1e-9)
    ref = (real.mean(0), np.cov(real, rowvar=False))
    m2 = StreamingFID(reference=ref).update(fake)
    assert m2.compute() == pytest.approx(fid(real, fake), rel=1e-9)
    with pytest.raises(DataError, match="reference statistics were given"):
        m2.update(real, real=True)


def test_streaming_intra_fid_equals_intra_fid():
    rng = np.random.default_rng(3)
    real, fake = rng.standard_normal((120, 4)), rng.standard_normal((90, 4)) + 0.5
    yr, yf = rng.integers(0, 3, 120), rng.integers(0, 3, 90)
    m = StreamingIntraFID()
    for s in range(0, 120, 17):
        m.update(real[s:s + 17], yr[s:s + 17], real=True)
    for s in range(0, 90, 11):
        m.update(fake[s:s + 11], yf[s:s + 11])
    out, ref = m.compute(), intra_fid(real, yr, fake, yf)
    assert out["mean"] == pytest.approx(ref["mean"], rel=1e-9)
    assert out["per_class"] == pytest.approx(ref["per_class"], rel=1e-9)
    empty = StreamingIntraFID().update(real, yr, real=True).update(fake[yf != 2], yf[yf != 2])
    with pytest.raises(DataError, match="class 2"):
        empty.compute()


def test_streaming_kid_prdc_is_equal_one_shot():
    rng = np.random.default_rng(4)
    real, fake = rng.standard_normal((80, 6)), rng.standard_normal((70, 6)) + 0.3
    k = StreamingKID(reference=real, subsets=5, subset_size=20, seed=1)
    for b in _batches(fake, rng):
        k.update(b)
    assert k.compute() == kid(real, fake, subsets=5, subset_size=20, seed=1)
    p = StreamingPRDC(k=3)
    for b in _batches(real, rng):
        p.update(b, real=True)
    p.update(fake)
    assert p.compute() == prdc(real, fake, k=3)
    with pytest.raises(DataError, match="feature dimensions differ"):
        p.update(rng.standard_normal((3, 2)))
    logits = rng.standard_normal((50, 4))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    s = StreamingIS(splits=5, seed=2)
    for b in _batches(probs, rng):
        s.update(b)
    assert s.compute() == inception_score(probs, splits=5, seed=2)
    with pytest.raises(DataError, match="add both real and fake"):
        StreamingKID().update(fake).compute()
