"""Tip-Adapter against the cache formula in numpy loops; Tip-Adapter-F's training and choices."""

from __future__ import annotations

import numpy as np
import pytest

from fmlab.adapt import TipAdapter, TipAdapterF
from fmlab.errors import ConfigError


def _unit(v):
    return v / np.linalg.norm(v)


def tip_reference(keys, y, Q, alpha, beta, zs=None):
    n_cls = int(y.max()) + 1
    out = np.zeros((len(Q), n_cls))
    for i, q in enumerate(Q):
        qn = _unit(q)
        for key, lab in zip(keys, y):
            out[i, lab] += alpha * np.exp(-beta * (1 - qn @ key))
        if zs is not None:
            for c in range(n_cls):
                out[i, c] += 100 * qn @ _unit(zs[c])
    return out


def test_tip_matches_reference(mixture):
    X, y, _ = mixture(4, 5, 12, seed=0)
    Q, _, _ = mixture(3, 5, 12, seed=1)
    keys = [_unit(x) for x in X]
    est = TipAdapter(alpha=1.7, beta=5.5).fit(X, y)
    np.testing.assert_allclose(est.decision_function(Q), tip_reference(keys, y, Q, 1.7, 5.5),
                               rtol=1e-10)


def test_tip_views_are_averaged_and_fused_with_zero_shot(mixture):
    X, y, means = mixture(3, 4, 10, seed=2)
    rng = np.random.default_rng(0)
    V = np.stack([X + 0.3 * rng.normal(size=X.shape) for _ in range(3)])
    Q, _, _ = mixture(4, 4, 10, seed=3)
    zs = means + rng.normal(size=means.shape)
    keys = [_unit(np.mean([_unit(V[v, i]) for v in range(3)], axis=0)) for i in range(len(X))]
    est = TipAdapter(alpha=2.0, beta=3.0, zeroshot_weights=zs).fit(V, y)
    np.testing.assert_allclose(est.decision_function(Q),
                               tip_reference(keys, y, Q, 2.0, 3.0, zs), rtol=1e-10)


def test_tip_search_equals_brute_force_loop(mixture):
    X, y, means = mixture(2, 6, 16, seed=4, spread=2.0)
    Xv, yv, _ = mixture(2, 6, 16, seed=5, spread=2.0, means=means)
    zs = means + 2.0 * np.random.default_rng(1).normal(size=means.shape)
    alphas, betas = (0.5, 1.0, 3.0), (0.5, 2.0, 8.0, 20.0)
    est = TipAdapter(zeroshot_weights=zs, alpha_grid=alphas, beta_grid=betas).fit(
        X, y, X_val=Xv, y_val=yv)
    keys = [_unit(x) for x in X]
    best = None
    for a in alphas:
        for b in betas:
            s = tip_reference(keys, y, Xv, a, b, zs)
            acc = np.mean(s.argmax(1) == yv)
            s = s - s.max(1, keepdims=True)
            loss = -np.mean((s - np.log(np.exp(s).sum(1, keepdims=True)))[np.arange(len(yv)), yv])
            key = (-acc, loss)
            if best is None or key < best[0]:
                best = (key, a, b)
    assert est.hyperparameters_ == {"alpha": pytest.approx(best[1]),
                                    "beta": pytest.approx(best[2])}


def test_tip_without_zero_shot_searches_only_beta(mixture):
    X, y, means = mixture(2, 4, 8, seed=6)
    Xv, yv, _ = mixture(2, 4, 8, seed=7, means=means)
    est = TipAdapter().fit(X, y, X_val=Xv, y_val=yv)
    assert est.hyperparameters_["alpha"] == 1.0
    with pytest.raises(ConfigError, match="X_val"):
        TipAdapter().fit(X, y)
    TipAdapter(beta=1.0).fit(X, y)  # nothing to choose: no validation needed


def test_tipf_training_improves_the_training_fit(mixture):
    X, y, means = mixture(8, 5, 16, seed=8, spread=2.5)
    Xv, yv, _ = mixture(4, 5, 16, seed=9, spread=2.5, means=means)
    base = TipAdapter(alpha=1.0, beta=1.0).fit(X, y)
    tuned = TipAdapterF(alpha=1.0, beta=1.0, epochs=30, lr=1e-2).fit(X, y, X_val=Xv, y_val=yv)

    def train_loss(est):
        p = est.predict_proba(X)
        return -np.mean(np.log(p[np.arange(len(y)), y]))

    ep = tuned.hyperparameters_["epoch"]
    assert 1 <= ep <= 30
    if ep > 1:
        assert train_loss(tuned) < train_loss(base)
    assert not np.allclose(tuned.keys_, base.keys_)
    # the kept epoch is the best on validation: at least as good as the untrained cache
    assert np.mean(tuned.predict(Xv) == yv) >= np.mean(base.predict(Xv) == yv)


def test_tipf_is_deterministic_per_seed_and_uses_views(mixture):
    X, y, means = mixture(6, 3, 8, seed=10, spread=2.0)
    Xv, yv, _ = mixture(3, 3, 8, seed=11, spread=2.0, means=means)
    a = TipAdapterF(seed=1, epochs=5).fit(X, y, X_val=Xv, y_val=yv)
    b = TipAdapterF(seed=1, epochs=5).fit(X, y, X_val=Xv, y_val=yv)
    np.testing.assert_array_equal(a.keys_, b.keys_)
    V = np.stack([X, X + 0.5])
    c = TipAdapterF(seed=1, epochs=5).fit(V, y, X_val=Xv, y_val=yv)
    assert c.keys_.shape == a.keys_.shape
    with pytest.raises(ConfigError, match="X_val"):
        TipAdapterF(alpha=1.0, beta=1.0).fit(X, y)
