"""LinearProbe: scikit-learn's objective and predictions, and its validation search of C."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from fmlab.adapt import LinearProbe
from fmlab.errors import ConfigError


def objective(W, b, X, y, C):
    """scikit-learn's objective: C · Σ CE + ½‖W‖², bias unpenalised (W is (K, D))."""
    logits = X @ W.T + b
    logits = logits - logits.max(1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    return -C * logp[np.arange(len(y)), y].sum() + 0.5 * np.sum(W * W)


@pytest.mark.parametrize("C", [0.1, 1.0, 10.0])
def test_matches_sklearn_logistic_regression(mixture, C):
    X, y, means = mixture(60, 8, 24, seed=0, spread=2.0)
    Q, _, _ = mixture(100, 8, 24, seed=1, spread=2.0, means=means)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with threadpool_limits(1):  # tiny problem: threads only add barrier waits
            sk = LogisticRegression(C=C, solver="lbfgs", max_iter=1000, tol=1e-8).fit(X, y)
    lp = LinearProbe(C=C, max_iter=500, tol=1e-6).fit(X.astype(np.float32), y)
    agree = np.mean(lp.predict(Q.astype(np.float32)) == sk.predict(Q))
    assert agree >= 0.99, agree
    # Same minimiser: our objective at our solution is no worse than at scikit-learn's.
    ours = objective(lp.coef_.astype(np.float64), lp.intercept_.astype(np.float64), X, y, C)
    theirs = objective(sk.coef_, sk.intercept_, X, y, C)
    assert ours <= theirs * (1 + 1e-4)
    # multinomial parametrisation: W is unique (penalised); the bias only up to a constant
    np.testing.assert_allclose(lp.coef_, sk.coef_, rtol=0, atol=2e-3 * np.abs(sk.coef_).max())


def test_float64_matches_sklearn_tightly(mixture):
    X, y, _ = mixture(30, 4, 10, seed=3, spread=2.0)
    with threadpool_limits(1):
        sk = LogisticRegression(C=0.5, max_iter=1000, tol=1e-10).fit(X, y)
    lp = LinearProbe(C=0.5, max_iter=1000, tol=1e-10, dtype="float64").fit(X, y)
    assert objective(lp.coef_, lp.intercept_, X, y, 0.5) == pytest.approx(
        objective(sk.coef_, sk.intercept_, X, y, 0.5), rel=1e-9)
    np.testing.assert_allclose(lp.coef_, sk.coef_, atol=2e-5)
    np.testing.assert_allclose(lp.predict_proba(X), sk.predict_proba(X), atol=2e-5)


def val_acc(C, X, y, Xv, yv):
    return np.mean(LinearProbe(C=C, max_iter=200).fit(X, y).predict(Xv) == yv)


def test_search_is_at_least_as_good_as_every_grid_point(mixture):
    X, y, means = mixture(4, 10, 32, seed=4, spread=2.5)
    Xv, yv, _ = mixture(4, 10, 32, seed=5, spread=2.5, means=means)
    grid = (1e-4, 1e-2, 1.0, 1e2)
    lp = LinearProbe(C_grid=grid, max_iter=200).fit(X, y, X_val=Xv, y_val=yv)
    C = lp.hyperparameters_["C"]
    assert 1e-4 / 100 <= C <= 1e2 * 100
    chosen = np.mean(lp.predict(Xv) == yv)
    assert chosen >= max(val_acc(c, X, y, Xv, yv) for c in grid) - 1.0 / len(yv)
    # the returned model is the fixed-C model at the chosen C
    fixed = LinearProbe(C=C, max_iter=200).fit(X, y)
    assert np.mean(fixed.predict(Xv) == lp.predict(Xv)) >= 0.95


def test_single_grid_value_without_refinement_is_that_value(mixture):
    X, y, _ = mixture(3, 3, 5, seed=0)
    lp = LinearProbe(C_grid=(0.3,), refine_steps=0).fit(X, y, X_val=X, y_val=y)
    assert lp.hyperparameters_ == {"C": pytest.approx(0.3)}


def test_search_needs_validation(mixture):
    X, y, _ = mixture(3, 3, 5, seed=0)
    with pytest.raises(ConfigError, match="X_val"):
        LinearProbe().fit(X, y)
    LinearProbe(C=1.0).fit(X, y)  # a fixed C needs none


def test_views_are_samples(mixture):
    X, y, _ = mixture(5, 3, 6, seed=0)
    V = np.stack([X, X * 0.5 + 0.1])
    a = LinearProbe(C=1.0, dtype="float64", tol=1e-9, max_iter=500).fit(V, y)
    b = LinearProbe(C=1.0, dtype="float64", tol=1e-9, max_iter=500).fit(
        V.reshape(-1, 6), np.tile(y, 2))
    np.testing.assert_allclose(a.coef_, b.coef_, atol=1e-6)


def test_deterministic(mixture):
    X, y, _ = mixture(10, 5, 16, seed=1, spread=2.0)
    a = LinearProbe(C=2.0).fit(X, y)
    b = LinearProbe(C=2.0).fit(torch.as_tensor(X), y)
    np.testing.assert_array_equal(a.coef_, b.coef_)


def test_batched_solver_equals_independent_runs(mixture):
    from fmlab.adapt.linear import fit_logistic

    X, y, _ = mixture(20, 4, 8, seed=7, spread=2.0)
    Xt, yt = torch.as_tensor(X), torch.as_tensor(y)
    Cs = [0.01, 0.3, 5.0]
    Wb, bb, _ = fit_logistic(Xt, yt, 4, Cs, tol=1e-9, max_iter=500)
    for i, C in enumerate(Cs):
        W, b, _ = fit_logistic(Xt, yt, 4, C, tol=1e-9, max_iter=500)
        np.testing.assert_allclose(Wb[i].numpy(), W.numpy(), atol=1e-7)
        np.testing.assert_allclose((bb[i] - bb[i].mean()).numpy(), (b - b.mean()).numpy(),
                                   atol=1e-7)


def test_start_does_not_change_the_optimum(mixture):
    from fmlab.adapt.linear import fit_logistic

    X, y, _ = mixture(25, 5, 10, seed=8, spread=2.0)
    Xt, yt = torch.as_tensor(X), torch.as_tensor(y)
    W0, _, _ = fit_logistic(Xt, yt, 5, 2.0, tol=1e-10, max_iter=1000, init="zeros")
    W1, _, _ = fit_logistic(Xt, yt, 5, 2.0, tol=1e-10, max_iter=1000, init="class_means")
    np.testing.assert_allclose(W0.numpy(), W1.numpy(), atol=1e-7)
