"""Input checks shared by every estimator: bad features and labels fail with a clear DataError."""

from __future__ import annotations

import numpy as np
import pytest

from fmlab.adapt import (
    GDA,
    KNN,
    NCM,
    LinearProbe,
    TipAdapter,
    TipAdapterF,
    ZeroShot,
    ZeroShotEnsemble,
)
from fmlab.errors import ConfigError, DataError

D = 6


def make_estimators():
    zs = np.random.default_rng(0).normal(size=(3, D))
    return [NCM(), NCM(metric="euclidean"), KNN(k=3), LinearProbe(), GDA(), GDA("oas"),
            TipAdapter(), TipAdapterF(epochs=2), ZeroShotEnsemble(GDA(), zs)]


IDS = [type(e).__name__ for e in make_estimators()]


@pytest.fixture
def data(mixture):
    X, y, means = mixture(4, 3, D, seed=0)
    Xv, yv, _ = mixture(2, 3, D, seed=1, means=means)
    return X, y, Xv, yv


@pytest.mark.parametrize("i", range(len(IDS)), ids=IDS)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_features_are_rejected(data, i, bad):
    X, y, Xv, yv = data
    est = make_estimators()[i]
    Xb = X.copy()
    Xb[2, 1] = bad
    with pytest.raises(DataError, match="NaN or infinite"):
        est.fit(Xb, y, X_val=Xv, y_val=yv)
    Xvb = Xv.copy()
    Xvb[0, 0] = bad
    with pytest.raises(DataError, match="NaN or infinite"):
        make_estimators()[i].fit(X, y, X_val=Xvb, y_val=yv)
    est = make_estimators()[i].fit(X, y, X_val=Xv, y_val=yv)
    with pytest.raises(DataError, match="NaN or infinite"):
        est.predict(Xvb)


@pytest.mark.parametrize("i", range(len(IDS)), ids=IDS)
def test_length_mismatch_and_wrong_dimension(data, i):
    X, y, Xv, yv = data
    with pytest.raises(DataError, match="12 samples but y has 11 labels"):
        make_estimators()[i].fit(X, y[:-1], X_val=Xv, y_val=yv)
    est = make_estimators()[i].fit(X, y, X_val=Xv, y_val=yv)
    # scikit-learn's wording (its check_n_features_in_after_fitting looks for it)
    with pytest.raises(DataError, match=f"has {D + 1} features, but .* expecting {D} features"):
        est.predict(np.ones((2, D + 1)))
    with pytest.raises(DataError, match="shape"):
        est.predict(np.ones(D))
    assert est.predict(Xv).shape == (len(Xv),)
    proba = est.predict_proba(Xv)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("i", range(len(IDS)), ids=IDS)
def test_predict_before_fit(i):
    with pytest.raises(ConfigError, match="not fitted"):
        make_estimators()[i].predict(np.ones((2, D)))


def test_labels_must_be_integers(data):
    X, y, _, _ = data
    with pytest.raises(DataError, match="integer class labels"):
        NCM().fit(X, y + 0.5)
    with pytest.raises(DataError, match="integer class labels"):
        NCM().fit(X, np.array(["a"] * len(y)))
    NCM().fit(X, y.astype(np.float64))  # integral floats are fine


def test_validation_labels_must_be_known_classes(data):
    X, y, Xv, yv = data
    with pytest.raises(DataError, match="absent from the training labels"):
        GDA().fit(X, y, X_val=Xv, y_val=yv + 5)


def test_zeroshot_checks():
    zs = ZeroShot(np.ones((3, D)))
    with pytest.raises(DataError, match="outside 0..2"):
        zs.fit(np.ones((2, D)), np.array([0, 3]))
    with pytest.raises(ConfigError, match="shape"):
        ZeroShot(np.ones(D)).fit()


def test_bad_hyperparameters(data):
    """scikit-learn's contract: the constructor stores, ``fit`` checks (naming parameter and value)."""
    X, y, _, _ = data
    cases = [(NCM(metric="manhattan"), "'metric' parameter of NCM .*'manhattan'"),
             (KNN(k=0), "'k' parameter of KNN .* Got 0"),
             (GDA(covariance="shrunk"), "'covariance' parameter of GDA .*'shrunk'"),
             (LinearProbe(C=-1.0), "'C' parameter of LinearProbe .* Got -1.0"),
             (LinearProbe(C=1.0, C_grid=(1.0, -2.0)), r"C_grid must be positive numbers, got \(1.0, -2.0\)")]
    for est, match in cases:
        assert est.get_params()  # building never fails
        with pytest.raises(ConfigError, match=match):
            est.fit(X, y)
