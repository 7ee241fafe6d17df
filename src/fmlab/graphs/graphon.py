"""Graphons, graphon bases and the W2PGNN feasibility score (Cao et al., 2023).

W2PGNN asks *whether* pre-training on a set of graphs can help a downstream dataset D before
training anything: fit the pre-training graphs into a few graphon bases B_1..B_k (one per cluster
of pre-training graphs), and score D by how well a convex mix of the bases generates it::

    feasibility(D) = 1 - min_{alpha in simplex} d(W_D, sum_i alpha_i B_i)

Estimation (step-function graphons at a fixed resolution K): sort a graph's nodes by degree
(descending) and average its adjacency over a K x K grid of node blocks (the sorting-and-smoothing
estimator of Chan & Airoldi 2014 with block averaging as the smoothing; graphs with fewer than K
nodes are sampled at the block centres, i.e. the step function of the sorted adjacency). USVT
(Chatterjee 2015) first replaces the adjacency by its singular-value-thresholded reconstruction.
A dataset's graphon W_D is the mean of its graphs' estimates.

Distance: d(U, V) = ||U - V||_F / K, the L2 distance of the two step functions on [0,1]^2 (each
cell has area 1/K^2). Graphon values lie in [0, 1], so d is in [0, 1] and so is the score; it is
1 exactly when W_D is a convex mix of the bases. This is the paper's GW/cut distance replaced by
the L2 distance of degree-aligned step functions (a cheap upper bound of the cut distance between
the aligned estimates; no optimal transport).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fmlab.errors import ConfigError

__all__ = ["GraphonBases", "dataset_graphons", "estimate_graphon", "feasibility", "fit_bases", "graphon_distance", "kmeans",
           "simplex_least_squares", "usvt"]


def usvt(adj: np.ndarray, eta: float = 0.01) -> np.ndarray:
    """Universal singular value thresholding: keep singular values >= (2 + eta) sqrt(n).

    Why it is optional: on the small sparse TU graphs (n ~ 20-40, top singular value ~ 3) the
    threshold removes every component, so the estimate is all zeros; it is meant for large
    dense graphs.

    Examples:
        >>> a = np.ones((50, 50)) - np.eye(50)
        >>> float(np.round(usvt(a).mean(), 2))
        0.98
    """
    n = len(adj)
    if n == 0:
        return adj.astype(np.float64)
    u, s, vt = np.linalg.svd(adj.astype(np.float64))
    keep = s >= (2.0 + eta) * np.sqrt(n)
    est = (u[:, keep] * s[keep]) @ vt[keep]
    return np.clip(est, 0.0, 1.0)


def _block_matrix(n: int, k: int) -> np.ndarray:
    """(k, n) averaging weights: row a averages the sorted nodes of block a (or picks one node)."""
    m = np.zeros((k, n))
    if n >= k:
        blocks = (np.arange(n) * k) // n
        m[blocks, np.arange(n)] = 1.0
        m /= m.sum(axis=1, keepdims=True)
    else:
        m[np.arange(k), ((np.arange(k) + 0.5) * n / k).astype(int)] = 1.0
    return m


def estimate_graphon(edge_index: np.ndarray, n: int, resolution: int = 16,
                     method: str = "sas") -> np.ndarray:
    """The K x K step-function graphon of one graph (degree-sorted block averages).

    Args:
        edge_index: (2, E) 0-based edges (both directions for an undirected graph).
        n: the number of nodes.
        resolution: K.
        method: ``"sas"`` (sort, block-average) or ``"usvt"`` (threshold, sort, block-average).

    Returns:
        (K, K) float64 in [0, 1], symmetric for a symmetric edge list.

    Examples:
        >>> e = np.array([[0, 1, 1, 2], [1, 0, 2, 1]])  # path 0-1-2
        >>> estimate_graphon(e, 3, resolution=3).tolist()
        [[0.0, 1.0, 1.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]
    """
    if method not in ("sas", "usvt"):
        raise ConfigError(f"graphon.method: {method!r} must be sas or usvt")
    if resolution < 1:
        raise ConfigError(f"graphon.resolution: {resolution!r} must be >= 1")
    adj = np.zeros((n, n))
    adj[edge_index[0], edge_index[1]] = 1.0
    if method == "usvt":
        adj = usvt(adj)
    order = np.argsort(-adj.sum(axis=1), kind="stable")
    adj = adj[np.ix_(order, order)]
    m = _block_matrix(n, resolution)
    return m @ adj @ m.T


def dataset_graphons(dataset: Any, resolution: int = 16, method: str = "sas") -> np.ndarray:
    """(G, K, K) graphon estimates of every graph of a dataset (anything with ``len`` and
    ``graph(g) -> (n, edges)``, e.g. :class:`fmlab.data.graphs.GraphDataset`).

    Examples:
        >>> class Two:
        ...     def __len__(self): return 2
        ...     def graph(self, g): return 2, np.array([[0, 1], [1, 0]])
        >>> dataset_graphons(Two(), resolution=2).shape
        (2, 2, 2)
    """
    return np.stack([estimate_graphon(e, n, resolution, method)
                     for n, e in (dataset.graph(g) for g in range(len(dataset)))])


def graphon_distance(u: np.ndarray, v: np.ndarray) -> float:
    """L2 distance of two K x K step functions on [0, 1]^2: ||U - V||_F / K (in [0, 1]).

    Examples:
        >>> graphon_distance(np.zeros((4, 4)), np.ones((4, 4)))
        1.0
    """
    return float(np.linalg.norm(u - v) / u.shape[0])


def kmeans(x: np.ndarray, k: int, seed: int = 0, iters: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's k-means with k-means++ seeding; centroids are the means of the final clusters.

    Why our own: the self-feasibility property needs the centroids to be exactly the means of the
    returned clusters (so the cluster-size-weighted mix of bases is the dataset mean); a library
    may stop after an assignment step and break that.

    Returns:
        ``(centroids (k', D), labels (N,))`` with k' = min(k, number of distinct rows); empty
        clusters are dropped.

    Examples:
        >>> c, lab = kmeans(np.array([[0.0], [0.1], [5.0], [5.2]]), 2)
        >>> sorted(np.round(c[:, 0], 2).tolist()), int(lab[0] == lab[1])
        ([0.05, 5.1], 1)
    """
    rng = np.random.default_rng(seed)
    k = max(1, min(k, len(np.unique(x, axis=0))))
    cent = [x[rng.integers(len(x))]]
    for _ in range(1, k):
        d2 = np.min(((x[:, None] - np.asarray(cent)[None]) ** 2).sum(-1), axis=1)
        cent.append(x[rng.choice(len(x), p=d2 / d2.sum())] if d2.sum() > 0 else x[rng.integers(len(x))])
    c = np.asarray(cent, dtype=np.float64)
    labels = np.zeros(len(x), dtype=np.int64)
    for it in range(iters):
        new = np.argmin(((x[:, None] - c[None]) ** 2).sum(-1), axis=1)
        if it and np.array_equal(new, labels):
            break
        labels = new
        c = np.stack([x[labels == j].mean(0) if (labels == j).any() else c[j] for j in range(len(c))])
    used = np.unique(labels)
    c = np.stack([x[labels == j].mean(0) for j in used])
    return c, np.searchsorted(used, labels)


@dataclass
class GraphonBases:
    """Graphon bases: (k, K, K) centroids of the pre-training graphs' graphons, their weights
    (cluster fractions) and the cluster of each pre-training graph."""

    bases: np.ndarray
    weights: np.ndarray
    labels: np.ndarray


def fit_bases(graphons: np.ndarray, k: int = 4, seed: int = 0) -> GraphonBases:
    """Cluster per-graph graphons (N, K, K) with k-means; the centroids are the bases.

    Examples:
        >>> g = np.stack([np.zeros((2, 2)), np.zeros((2, 2)), np.ones((2, 2))])
        >>> b = fit_bases(g, k=2)
        >>> sorted(b.bases.mean(axis=(1, 2)).tolist()), sorted(np.round(b.weights, 2).tolist())
        ([0.0, 1.0], [0.33, 0.67])
    """
    n, r, _ = graphons.shape
    cent, labels = kmeans(graphons.reshape(n, r * r), k, seed=seed)
    weights = np.bincount(labels, minlength=len(cent)) / n
    return GraphonBases(cent.reshape(-1, r, r), weights, labels)


def _project_simplex(v: np.ndarray) -> np.ndarray:
    """Euclidean projection onto {a >= 0, sum a = 1} (Duchi et al. 2008)."""
    u = np.sort(v)[::-1]
    css = np.cumsum(u) - 1.0
    rho = np.nonzero(u * np.arange(1, len(v) + 1) > css)[0][-1]
    return np.maximum(v - css[rho] / (rho + 1.0), 0.0)


def simplex_least_squares(bases: np.ndarray, target: np.ndarray, iters: int = 3000) -> np.ndarray:
    """argmin over the simplex of ||target - sum_i alpha_i bases_i||_F (accelerated projected
    gradient, step 1/L with L the largest eigenvalue of the Gram matrix).

    Examples:
        >>> b = np.stack([np.zeros((2, 2)), np.ones((2, 2))])
        >>> np.round(simplex_least_squares(b, np.full((2, 2), 0.25)), 3).tolist()
        [0.75, 0.25]
    """
    a = bases.reshape(len(bases), -1)
    t = target.reshape(-1)
    gram, lin = a @ a.T, a @ t
    lip = float(np.linalg.eigvalsh(gram)[-1]) or 1.0
    alpha = np.full(len(a), 1.0 / len(a))
    y, tk = alpha.copy(), 1.0
    for _ in range(iters):
        new = _project_simplex(y - (gram @ y - lin) / lip)
        tn = (1.0 + np.sqrt(1.0 + 4.0 * tk * tk)) / 2.0
        y = new + ((tk - 1.0) / tn) * (new - alpha)
        if np.abs(new - alpha).max() < 1e-12:
            alpha = new
            break
        alpha, tk = new, tn
    return alpha


def feasibility(target: np.ndarray, bases: GraphonBases | np.ndarray) -> tuple[float, np.ndarray]:
    """W2PGNN feasibility 1 - min_alpha d(target, sum alpha_i B_i), and the optimal alpha.

    Examples:
        >>> b = np.stack([np.zeros((4, 4)), np.ones((4, 4))])
        >>> score, alpha = feasibility(np.full((4, 4), 0.5), b)
        >>> round(score, 6), np.round(alpha, 3).tolist()
        (1.0, [0.5, 0.5])
    """
    b = bases.bases if isinstance(bases, GraphonBases) else np.asarray(bases)
    alpha = simplex_least_squares(b, target)
    mix = np.tensordot(alpha, b, axes=1)
    return 1.0 - graphon_distance(target, mix), alpha
