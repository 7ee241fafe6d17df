"""GDA against the formulas in numpy loops; its shrinkage estimators against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.covariance import OAS, LedoitWolf

from fmlab.adapt import GDA, NCM, ledoit_wolf_shrinkage, oas_shrinkage


def gda_reference(X, y, Q):
    classes = sorted(set(y.tolist()))
    n, d = X.shape
    mus = {c: sum(X[i] for i in range(n) if y[i] == c) / sum(1 for t in y if t == c)
           for c in classes}
    Xc = np.array([X[i] - mus[y[i]] for i in range(n)])
    m = Xc.mean(0)
    S = sum(np.outer(r - m, r - m) for r in Xc) / (n - 1)
    P = d * np.linalg.pinv((n - 1) * S + np.trace(S) * np.eye(d))
    out = np.zeros((len(Q), len(classes)))
    for i, x in enumerate(Q):
        for j, c in enumerate(classes):
            mu = mus[c]
            out[i, j] = x @ P @ mu - 0.5 * mu @ P @ mu + np.log(1.0 / len(classes))
    return out


def test_gda_ks_matches_reference(mixture):
    X, y, _ = mixture(3, 4, 20, seed=0)  # N=12 < D=20: the singular few-shot regime
    Q, _, _ = mixture(5, 4, 20, seed=1)
    est = GDA().fit(X, y)
    np.testing.assert_allclose(est.decision_function(Q), gda_reference(X, y, Q), rtol=1e-8,
                               atol=1e-8)


def test_gda_views_are_samples(mixture):
    X, y, _ = mixture(3, 4, 8, seed=0)
    rng = np.random.default_rng(1)
    V = np.stack([X + 0.3 * rng.normal(size=X.shape) for _ in range(5)])
    Q, _, _ = mixture(2, 4, 8, seed=2)
    est = GDA().fit(V, y)
    ref = gda_reference(V.reshape(-1, 8), np.tile(y, 5), Q)
    np.testing.assert_allclose(est.decision_function(Q), ref, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("n", [5, 40, 300])
def test_shrinkage_estimators_match_sklearn(n):
    rng = np.random.default_rng(n)
    A = rng.normal(size=(16, 16))
    X = rng.normal(size=(n, 16)) @ A
    Xc = X - X.mean(0)
    lw_cov, lw_s = ledoit_wolf_shrinkage(torch.as_tensor(Xc))
    oas_cov, oas_s = oas_shrinkage(torch.as_tensor(Xc))
    lw, oas = LedoitWolf().fit(X), OAS().fit(X)
    assert lw_s == pytest.approx(lw.shrinkage_, rel=1e-9)
    assert oas_s == pytest.approx(oas.shrinkage_, rel=1e-9)
    np.testing.assert_allclose(lw_cov.numpy(), lw.covariance_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(oas_cov.numpy(), oas.covariance_, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("cov,cls", [("ledoit_wolf", LedoitWolf), ("oas", OAS)])
def test_gda_shrunk_precisions_follow_sklearn(mixture, cov, cls):
    X, y, _ = mixture(6, 3, 10, seed=3)
    est = GDA(covariance=cov).fit(X, y)
    means = np.stack([X[y == c].mean(0) for c in range(3)])
    ref_prec = np.linalg.pinv(cls().fit(X - means[y]).covariance_)
    np.testing.assert_allclose(est.precision_, ref_prec, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(est.coef_, means @ ref_prec, rtol=1e-7, atol=1e-9)


def test_gda_priors(mixture):
    X, y, _ = mixture(4, 3, 5, seed=0)
    keep = np.r_[np.flatnonzero(y == 0), np.flatnonzero(y == 1)[:2], np.flatnonzero(y == 2)]
    X, y = X[keep], y[keep]
    uni = GDA().fit(X, y)
    emp = GDA(priors="empirical").fit(X, y)
    counts = np.bincount(y)
    np.testing.assert_allclose(emp.intercept_ - uni.intercept_,
                               np.log(counts / counts.sum()) - np.log(1 / 3), atol=1e-12)


def test_gda_one_shot_without_views_is_not_constant(mixture):
    X, y, _means = mixture(1, 5, 8, seed=0, spread=0.1)
    est = GDA().fit(X, y)
    assert est.hyperparameters_.get("degenerate_covariance") is True
    # identity precision: nearest-mean rule on x·μ − ½‖μ‖², so each training point is its own class
    np.testing.assert_array_equal(est.predict(X), y)


def test_gda_uses_the_shared_covariance():
    """Strongly anisotropic shared noise: the covariance-aware rule must beat nearest-mean."""
    rng = np.random.default_rng(0)
    d, c = 32, 10
    mu = rng.normal(size=(c, d))
    mu *= 2 / np.linalg.norm(mu, axis=1, keepdims=True)
    rot = np.linalg.qr(rng.normal(size=(d, d)))[0]
    A = rot @ np.diag(np.r_[np.full(4, 4.0), np.full(d - 4, 0.3)])

    def draw(n, seed):
        y = np.repeat(np.arange(c), n)
        return mu[y] + np.random.default_rng(seed).normal(size=(len(y), d)) @ A.T, y

    X, y = draw(16, 1)
    Q, yq = draw(50, 2)
    ncm = np.mean(NCM(metric="euclidean").fit(X, y).predict(Q) == yq)
    for cov in ("ks", "ledoit_wolf", "oas"):
        acc = np.mean(GDA(covariance=cov).fit(X, y).predict(Q) == yq)
        assert acc > 0.9 and acc > ncm + 0.3, (cov, acc, ncm)
