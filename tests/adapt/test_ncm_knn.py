"""NCM and KNN against straightforward numpy loops over the formulas."""

from __future__ import annotations

import numpy as np
import pytest

from fmlab.adapt import KNN, NCM


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def ncm_reference(X, y, Q, metric, center):
    classes = sorted(set(y.tolist()))
    feats = [(_unit(x) if metric == "cosine" else x) for x in X]
    means = {c: np.mean([f for f, t in zip(feats, y) if t == c], axis=0) for c in classes}
    c0 = np.mean(feats, axis=0) if (center and metric == "cosine") else 0.0
    out = np.zeros((len(Q), len(classes)))
    for i, q in enumerate(Q):
        for j, c in enumerate(classes):
            if metric == "cosine":
                a, b = _unit(q) - c0, means[c] - c0
                out[i, j] = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
            else:
                out[i, j] = -np.sqrt(np.sum((q - means[c]) ** 2))
    return out


@pytest.mark.parametrize("metric,center", [("cosine", False), ("cosine", True),
                                           ("euclidean", False)])
def test_ncm_matches_reference(mixture, metric, center):
    X, y, _ = mixture(7, 5, 12, seed=0)
    y = y * 3 + 2  # non-contiguous labels exercise classes_ bookkeeping
    Q, _, _ = mixture(4, 5, 12, seed=1)
    est = NCM(metric=metric, center=center).fit(X, y)
    ref = ncm_reference(X, y, Q, metric, center)
    np.testing.assert_allclose(est.decision_function(Q), ref, rtol=1e-10, atol=1e-10)
    np.testing.assert_array_equal(est.classes_, np.unique(y))
    np.testing.assert_array_equal(est.predict(Q), np.unique(y)[ref.argmax(1)])


def test_ncm_partial_fit_stream_equals_joint_fit(mixture):
    X, y, _ = mixture(10, 6, 8, seed=2)
    Q, _, _ = mixture(5, 6, 8, seed=3)
    joint = NCM(center=True).fit(X, y)
    stream = NCM(center=True)
    # task-free stream: classes arrive a few at a time, in uneven batches, new ones mid-stream
    order = np.argsort(y, kind="stable")
    for chunk in np.array_split(order, 7):
        stream.partial_fit(X[chunk], y[chunk])
    np.testing.assert_array_equal(stream.classes_, joint.classes_)
    np.testing.assert_allclose(stream.means_, joint.means_, atol=1e-12)
    np.testing.assert_allclose(stream.decision_function(Q), joint.decision_function(Q),
                               atol=1e-12)


def test_ncm_fit_forgets_previous_classes(mixture):
    X, y, _ = mixture(3, 4, 5, seed=0)
    est = NCM().fit(X, y + 10)
    est.fit(X, y)
    np.testing.assert_array_equal(est.classes_, np.arange(4))


def test_ncm_views_are_samples(mixture):
    X, y, _ = mixture(4, 3, 6, seed=0)
    V = np.stack([X, X + 0.1, X - 0.3])
    a = NCM(metric="euclidean").fit(V, y)
    b = NCM(metric="euclidean").fit(V.reshape(-1, 6), np.tile(y, 3))
    np.testing.assert_allclose(a.means_, b.means_, atol=1e-12)


def knn_reference(X, y, Q, k, T):
    classes = sorted(set(y.tolist()))
    keys = [_unit(x) for x in X]
    out = np.zeros((len(Q), len(classes)))
    for i, q in enumerate(Q):
        sims = [(_unit(q) @ key, lab) for key, lab in zip(keys, y)]
        sims.sort(key=lambda t: -t[0])
        for s, lab in sims[:k]:
            out[i, classes.index(lab)] += np.exp(s / T)
    return out


@pytest.mark.parametrize("k,T", [(1, 0.07), (5, 0.07), (20, 0.5), (500, 0.1)])
def test_knn_matches_reference(mixture, k, T):
    X, y, _ = mixture(8, 4, 10, seed=4)
    Q, _, _ = mixture(6, 4, 10, seed=5)
    est = KNN(k=k, temperature=T, chunk_size=7).fit(X, y)
    ref = knn_reference(X, y, Q, min(k, len(X)), T)
    np.testing.assert_allclose(est.decision_function(Q), ref, rtol=1e-9)
    np.testing.assert_allclose(est.predict_proba(Q), ref / ref.sum(1, keepdims=True), rtol=1e-9)
    assert est.hyperparameters_["k"] == min(k, len(X))


def test_knn_views_average_into_one_key_per_image(mixture):
    X, y, _ = mixture(5, 3, 6, seed=0)
    rng = np.random.default_rng(0)
    V = np.stack([X + 0.2 * rng.normal(size=X.shape) for _ in range(4)])
    Q, _, _ = mixture(3, 3, 6, seed=9)
    keys = np.stack([_unit(np.mean([_unit(V[v, i]) for v in range(4)], axis=0))
                     for i in range(len(X))])
    est = KNN(k=3).fit(V, y)
    np.testing.assert_allclose(est.decision_function(Q), knn_reference(keys, y, Q, 3, 0.07),
                               rtol=1e-9)


def test_ncm_and_knn_learn_the_mixture(mixture):
    X, y, means = mixture(20, 10, 32, seed=6, spread=0.5)
    Q, yq, _ = mixture(20, 10, 32, seed=7, spread=0.5, means=means)
    for est in (NCM(), NCM(metric="euclidean"), KNN(k=5)):
        acc = np.mean(est.fit(X, y).predict(Q) == yq)
        assert acc > 0.9, (est, acc)
