"""KID and IS against direct, loop-based implementations of their definitions."""

import math

import numpy as np
import pytest

from fmlab.errors import DataError
from fmlab.metrics import inception_score, kid


def _mmd2_loops(x, y):
    m, d = len(x), x.shape[1]

    def k(a, b):
        return (float(np.dot(a, b)) / d + 1.0) ** 3

    sxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
    syy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
    sxy = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
    return sxx / (m * (m - 1)) + syy / (m * (m - 1)) - 2 * sxy / (m * m)


def test_kid_matches_loop_estimator_on_the_same_subsets():
    rng = np.random.default_rng(0)
    real = rng.standard_normal((40, 6))
    fake = rng.standard_normal((35, 6)) * 1.3 + 0.2
    subsets, size, seed = 4, 12, 7
    # The documented subset draw: one generator, real then fake indices per subset.
    g = np.random.default_rng(seed)
    vals = []
    for _ in range(subsets):
        xi = g.choice(len(real), size, replace=False)
        yi = g.choice(len(fake), size, replace=False)
        vals.append(_mmd2_loops(real[xi], fake[yi]))
    mean, std = kid(real, fake, subsets=subsets, subset_size=size, seed=seed)
    assert mean == pytest.approx(np.mean(vals), rel=1e-10)
    assert std == pytest.approx(np.std(vals), rel=1e-8)


def test_kid_full_set_single_subset_is_permutation_invariant_and_seeded():
    rng = np.random.default_rng(1)
    real, fake = rng.standard_normal((20, 4)), rng.standard_normal((20, 4)) + 1
    a = kid(real, fake, subsets=1, subset_size=20, seed=0)
    b = kid(real, fake, subsets=1, subset_size=20, seed=123)
    assert a.mean == pytest.approx(_mmd2_loops(real, fake), rel=1e-10)
    assert a.mean == pytest.approx(b.mean, rel=1e-12)  # whole set: order is irrelevant
    assert a.std == 0.0
    c1 = kid(real, fake, subsets=5, subset_size=10, seed=3)
    c2 = kid(real, fake, subsets=5, subset_size=10, seed=3)
    assert c1 == c2


def test_kid_errors():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((10, 3))
    with pytest.raises(DataError, match="subset_size=11 exceeds the 10 real samples"):
        kid(x, rng.standard_normal((30, 3)), subset_size=11)
    with pytest.raises(DataError, match="subset_size=11 exceeds the 10 fake samples"):
        kid(rng.standard_normal((30, 3)), x, subset_size=11)
    with pytest.raises(DataError, match="feature dimensions differ"):
        kid(x, rng.standard_normal((10, 4)), subset_size=5)


def _is_direct(p):
    py = [sum(row[c] for row in p) / len(p) for c in range(len(p[0]))]
    kls = [sum(r * math.log(r / q) for r, q in zip(row, py) if r > 0) for row in p]
    return math.exp(sum(kls) / len(kls))


def test_inception_score_matches_direct_formula():
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((60, 7)) * 2
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    p[0] = 0.0
    p[0, 2] = 1.0  # exact zeros must be handled as 0 log 0 = 0
    splits, seed = 3, 5
    perm = np.random.default_rng(seed).permutation(len(p))
    parts = np.array_split(p[perm], splits)
    ref = [_is_direct(part.tolist()) for part in parts]
    mean, std = inception_score(p, splits=splits, seed=seed)
    assert mean == pytest.approx(np.mean(ref), rel=1e-10)
    assert std == pytest.approx(np.std(ref), rel=1e-8)


def test_inception_score_bounds_and_shuffle():
    n_cls = 10
    onehot = np.eye(n_cls)[np.repeat(np.arange(n_cls), 10)]  # class-sorted, confident
    # Shuffled splits each see ~all classes: close to the maximum n_cls.
    assert inception_score(onehot, splits=1).mean == pytest.approx(n_cls)
    shuffled = inception_score(onehot, splits=10, seed=0).mean
    assert shuffled > 4.0
    uniform = np.full((50, n_cls), 1.0 / n_cls)
    assert inception_score(uniform, splits=5).mean == pytest.approx(1.0)


def test_inception_score_rejects_logits():
    with pytest.raises(DataError, match="apply a softmax"):
        inception_score(np.random.default_rng(0).standard_normal((20, 4)), splits=2)
    with pytest.raises(DataError, match="at least 10 samples"):
        inception_score(np.full((5, 2), 0.5), splits=10)
