"""Provable-advantage study: the knob's independence, the ERM map, the advantage's sign."""

from __future__ import annotations

import numpy as np
import pytest

from fmlab.experiments.pretrain_advantage import load_advantage_config, run_grid
from fmlab.studies.advantage import erm_label_map, make_factor, make_gmm
from fmlab.studies.advantage_report import advantage_table


def _cramers_v(a: np.ndarray, b: np.ndarray, k: int) -> float:
    table = np.zeros((k, k))
    np.add.at(table, (a, b), 1)
    expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / table.sum()
    chi2 = ((table - expected) ** 2 / expected).sum()
    return float(np.sqrt(chi2 / (table.sum() * (k - 1))))


def test_label_is_independent_of_component_at_knob_1():
    rng = np.random.default_rng(0)
    p = make_gmm(5, 4, 3.0, 1.0, seed=3)
    _, y, z = p.sample(200_000, rng)
    assert _cramers_v(z, y, 4) < 0.01  # independence: association at sampling-noise level
    assert np.allclose(np.bincount(y) / len(y), 0.25, atol=0.01)
    # and fully dependent at knob 0, partly at 0.5: P(y = π(z)) = 1 − knob·(K−1)/K
    for knob, agree in ((0.0, 1.0), (0.5, 0.625)):
        q = make_gmm(5, 4, 3.0, knob, seed=3)
        _, y, z = q.sample(200_000, rng)
        assert np.mean(y == q.perm[z]) == pytest.approx(agree, abs=0.005)


def test_factor_knob_1_makes_bayes_predictor_constant():
    p = make_factor(20, 2, 0.5, 1.0, seed=0)
    x, y = p.sample(50_000, np.random.default_rng(0))
    assert np.allclose(p.bayes_predict(x), 0.0)
    assert np.mean(y ** 2) == pytest.approx(p.bayes_mse(), rel=0.02)
    q = make_factor(20, 2, 0.5, 0.0, seed=0)
    x, y = q.sample(50_000, np.random.default_rng(1))
    assert np.mean((q.bayes_predict(x) - y) ** 2) == pytest.approx(q.bayes_mse(), rel=0.02)


def test_erm_label_map_minimises_empirical_risk_exhaustively():
    """The majority-per-component map has the lowest 0-1 risk of all K^K maps."""
    import itertools

    rng = np.random.default_rng(0)
    comp, y = rng.integers(3, size=40), rng.integers(3, size=40)
    f = erm_label_map(comp, y, 3, 3)
    best = min(np.sum(np.asarray(g)[comp] != y) for g in itertools.product(range(3), repeat=3))
    assert np.sum(f[comp] != y) == best


def test_advantage_positive_when_m_much_larger_than_n_and_zero_at_knob_1():
    """m = 1000 ≫ n = 12 in d = 20: every seed gains, and the gain is gone once y ⟂ z."""
    cfg = load_advantage_config(None, ["grid.cases=[gmm]", "grid.m=[1000]", "grid.n=[12]",
                                       "grid.knobs=[0.0,1.0]", "grid.seeds=4", "grid.n_test=2000",
                                       "gmm.separation=4.0", "gmm.d=20"])
    records = run_grid(cfg)
    informative = advantage_table(records, "gmm", 0.0)[(1000, 12)]
    independent = advantage_table(records, "gmm", 1.0)[(1000, 12)]
    assert informative.min() > 0.02 and informative.mean() > 0.04, informative
    assert abs(independent.mean()) < 0.02, independent


def test_pretrain_matches_bayes_when_m_and_n_large():
    """With lots of both, pre-train + ERM's excess error is small on a separated mixture."""
    cfg = load_advantage_config(None, ["grid.cases=[gmm]", "grid.m=[2000]", "grid.n=[200]",
                                       "grid.knobs=[0.0]", "grid.seeds=2", "grid.n_test=2000",
                                       "gmm.separation=4.0"])
    excess = advantage_table(run_grid(cfg), "gmm", 0.0, "excess")[(2000, 200)]
    assert excess.mean() < 0.02


def test_grid_is_deterministic():
    """Same config → identical records; another top-level seed → different ones."""
    sets = ["grid.m=[30]", "grid.n=[10]", "grid.knobs=[0.0,1.0]", "grid.seeds=2", "grid.n_test=300",
            "gmm.n_init=1", "factor.d=8"]
    a = run_grid(load_advantage_config(None, sets))
    b = run_grid(load_advantage_config(None, sets))
    assert a == b
    other = run_grid(load_advantage_config(None, [*sets, "seed=5"]))
    assert [r["error"] for r in other] != [r["error"] for r in a]
