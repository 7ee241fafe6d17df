"""Graphon estimation and the W2PGNN feasibility score: SBM recovery, self-feasibility, the simplex fit."""

from __future__ import annotations

import numpy as np
import pytest

from fmlab.graphs.graphon import (
    dataset_graphons,
    estimate_graphon,
    feasibility,
    fit_bases,
    graphon_distance,
    simplex_least_squares,
)

P = np.array([[0.8, 0.1], [0.1, 0.4]])


def sbm(sizes, p, rng):
    """Edge list of a stochastic block model (undirected, both directions, no self-loops)."""
    z = np.repeat(np.arange(len(sizes)), sizes)
    n = len(z)
    upper = np.triu(rng.random((n, n)) < p[z][:, z], k=1)
    a = upper | upper.T
    return np.stack(np.nonzero(a)), n


@pytest.mark.parametrize("method", ["sas", "usvt"])
def test_large_sbm_recovers_block_probabilities(method):
    rng = np.random.default_rng(0)
    e, n = sbm([300, 300], P, rng)
    rng.shuffle(e.T)  # the edge order must not matter
    w = estimate_graphon(e, n, resolution=8, method=method)
    # degree sorting puts the dense block (expected degree 270) before the sparse one (150)
    blocks = w.reshape(2, 4, 2, 4).mean(axis=(1, 3))
    assert np.abs(blocks - P).max() < 0.02, np.round(blocks, 3)
    # within a block, sorting by the *empirical* degree orders nodes by their luck: a mild gradient
    # (the reason SAS smooths), bounded here per cell
    assert np.abs(w - np.kron(P, np.ones((4, 4)))).max() < 0.1, np.round(w, 2)
    assert np.allclose(w, w.T)


class _Graphs:
    def __init__(self, graphs):
        self.graphs = graphs

    def __len__(self):
        return len(self.graphs)

    def graph(self, g):
        e, n = self.graphs[g]
        return n, e


def _dataset(p, count, seed, sizes=(12, 12)):
    rng = np.random.default_rng(seed)
    return _Graphs([sbm(sizes, p, rng) for _ in range(count)])


def test_self_feasibility_is_maximal():
    """Bases fitted on a dataset generate its mean graphon exactly (score 1), and no other
    dataset scores higher against them."""
    own = dataset_graphons(_dataset(P, 40, 0))
    dense = dataset_graphons(_dataset(np.full((2, 2), 0.9), 40, 1))
    sparse = dataset_graphons(_dataset(np.full((2, 2), 0.05), 40, 2))
    bases = fit_bases(own, k=4, seed=0)
    self_score, alpha = feasibility(own.mean(0), bases)
    assert self_score == pytest.approx(1.0, abs=1e-6)
    assert alpha.min() >= 0 and alpha.sum() == pytest.approx(1.0)
    others = [feasibility(g.mean(0), bases)[0] for g in (dense, sparse)]
    assert all(0.0 <= s < self_score - 0.1 for s in others), others


def test_mean_of_bases_weighted_by_cluster_size_is_the_dataset_mean():
    g = dataset_graphons(_dataset(P, 30, 3))
    b = fit_bases(g, k=3, seed=1)
    assert np.allclose(np.tensordot(b.weights, b.bases, axes=1), g.mean(0))


def test_simplex_least_squares_matches_scipy():
    from scipy.optimize import minimize

    rng = np.random.default_rng(4)
    bases, target = rng.random((5, 6, 6)), rng.random((6, 6))
    ours = simplex_least_squares(bases, target)
    a, t = bases.reshape(5, -1), target.reshape(-1)
    ref = minimize(lambda x: ((a.T @ x - t) ** 2).sum(), np.full(5, 0.2), method="SLSQP",
                   bounds=[(0, 1)] * 5, constraints={"type": "eq", "fun": lambda x: x.sum() - 1},
                   options={"ftol": 1e-14, "maxiter": 500})
    assert ((a.T @ ours - t) ** 2).sum() <= ref.fun + 1e-9
    assert np.abs(ours - ref.x).max() < 1e-3


def test_distance_and_score_are_in_unit_interval():
    rng = np.random.default_rng(5)
    u, v = rng.random((8, 8)), rng.random((8, 8))
    assert 0 <= graphon_distance(u, v) <= 1 and graphon_distance(u, u) == 0
    score, _ = feasibility(np.zeros((8, 8)), np.ones((1, 8, 8)))
    assert score == pytest.approx(0.0)


def test_small_graph_is_sampled_at_block_centres():
    e = np.array([[0, 1], [1, 0]])  # one edge, one isolated node
    w = estimate_graphon(e, 3, resolution=6)
    assert w.shape == (6, 6) and w[:2, 2:4].tolist() == [[1.0, 1.0], [1.0, 1.0]] and w[4:].sum() == 0
