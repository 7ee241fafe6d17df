"""Expectation–maximisation for a Gaussian mixture: the MLE pre-training step of the provable-
advantage study (papers.md 37).

The theorem's pre-training is maximum likelihood of p_φ(x) on m unlabelled points; for a Gaussian
mixture EM is the standard (local) maximiser. EM's defining property is that every iteration does
not decrease the objective it maximises, so :func:`fit_gmm` records that objective at every
iteration (``GMMFit.history``) and the tests check it. The objective is the log-likelihood plus
an optional covariance penalty −½·reg·tr(Σ_k⁻¹) per covariance (an inverse-Wishart-like prior
that keeps Σ_k invertible when a component owns few points). Its M-step is exact —
Σ_k = (Σ_i r_ik (x_i−μ_k)(x_i−μ_k)ᵀ + reg·I) / n_k — so the penalised objective is still
monotone; with ``reg=0`` it is the plain log-likelihood.

Why our own ~150 lines rather than ``sklearn.mixture.GaussianMixture``: sklearn adds ``reg_covar``
after the M-step (which breaks exact monotonicity of any objective) and does not expose the
per-iteration likelihood.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.special import logsumexp

from fmlab.utils.validation import check, finite_float, positive_int

__all__ = ["COVARIANCE_TYPES", "GMMFit", "fit_gmm"]

COVARIANCE_TYPES = ("full", "shared")


@dataclass
class GMMFit:
    """A fitted Gaussian mixture.

    Attributes:
        weights: (K,) mixing proportions π_k.
        means: (K, d) component means μ_k.
        covariances: (K, d, d) covariances Σ_k (identical for ``shared``).
        reg: the covariance penalty the objective used.
        history: the objective (mean per point) after each E-step, in order.
        n_iter: EM iterations run.
    """

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    reg: float = 0.0
    history: list[float] = field(default_factory=list)
    n_iter: int = 0

    def log_joint(self, x: np.ndarray) -> np.ndarray:
        """(n, K) log π_k + log N(x_i; μ_k, Σ_k)."""
        return _log_joint(x, self.weights, self.means, self.covariances)

    def posterior(self, x: np.ndarray) -> np.ndarray:
        """(n, K) p(component k | x_i): the pre-trained representation of x.

        Examples:
            >>> fit = GMMFit(np.array([0.5, 0.5]), np.array([[-5.0], [5.0]]), np.ones((2, 1, 1)))
            >>> fit.posterior(np.array([[-5.0], [5.0]])).round(3)
            array([[1., 0.],
                   [0., 1.]])
        """
        lj = self.log_joint(x)
        return np.exp(lj - logsumexp(lj, axis=1, keepdims=True))

    def log_likelihood(self, x: np.ndarray) -> float:
        """Mean log p(x_i) over the rows of ``x``."""
        return float(logsumexp(self.log_joint(x), axis=1).mean())


def _log_joint(x: np.ndarray, w: np.ndarray, mu: np.ndarray, cov: np.ndarray) -> np.ndarray:
    n, d = x.shape
    out = np.empty((n, len(w)))
    for k in range(len(w)):
        chol = np.linalg.cholesky(cov[k])
        sol = np.linalg.solve(chol, (x - mu[k]).T)  # L⁻¹(x−μ): its squared norm is the Mahalanobis
        logdet = 2.0 * np.log(np.diag(chol)).sum()
        out[:, k] = np.log(w[k]) - 0.5 * (d * np.log(2 * np.pi) + logdet + (sol ** 2).sum(0))
    return out


def _objective(log_joint: np.ndarray, cov: np.ndarray, reg: float, shared: bool) -> float:
    """Mean log-likelihood minus the covariance penalty (counted once for a shared Σ)."""
    ll = float(logsumexp(log_joint, axis=1).sum())
    if reg > 0:
        covs = cov[:1] if shared else cov
        ll -= 0.5 * reg * sum(float(np.trace(np.linalg.inv(c))) for c in covs)
    return ll / len(log_joint)


def _init_means(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding: each next mean is a data point drawn ∝ squared distance to the chosen."""
    means = [x[rng.integers(len(x))]]
    for _ in range(1, k):
        d2 = np.min(((x[:, None, :] - np.asarray(means)[None]) ** 2).sum(-1), axis=1)
        p = d2 / d2.sum() if d2.sum() > 0 else np.full(len(x), 1.0 / len(x))
        means.append(x[rng.choice(len(x), p=p)])
    return np.asarray(means, dtype=float)


def _m_step(x: np.ndarray, resp: np.ndarray, reg: float, shared: bool):
    """Exact maximiser of the expected penalised complete-data log-likelihood."""
    n, d = x.shape
    nk = resp.sum(0) + 1e-12
    mu = (resp.T @ x) / nk[:, None]
    scatter = np.stack([(resp[:, k, None] * (x - mu[k])).T @ (x - mu[k]) for k in range(len(nk))])
    eye = reg * np.eye(d)
    if shared:
        cov = np.broadcast_to((scatter.sum(0) + eye) / n, scatter.shape).copy()
    else:
        cov = (scatter + eye) / nk[:, None, None]
    return nk / n, mu, cov


def _run_em(x: np.ndarray, k: int, rng: np.random.Generator, shared: bool, reg: float,
            max_iter: int, tol: float) -> GMMFit:
    """One EM run from a k-means++ start (hard assignments give the first responsibilities)."""
    mu = _init_means(x, k, rng)
    hard = np.argmin(((x[:, None, :] - mu[None]) ** 2).sum(-1), axis=1)
    resp = np.eye(k)[hard] * (1 - 1e-3) + 1e-3 / k  # no component starts empty
    w, mu, cov = _m_step(x, resp, reg, shared)
    history: list[float] = []
    for it in range(max_iter):
        lj = _log_joint(x, w, mu, cov)
        history.append(_objective(lj, cov, reg, shared))
        if it and history[-1] - history[-2] < tol:
            break
        resp = np.exp(lj - logsumexp(lj, axis=1, keepdims=True))
        w, mu, cov = _m_step(x, resp, reg, shared)
    return GMMFit(w, mu, cov, reg, history, len(history))


def fit_gmm(x: np.ndarray, k: int, *, covariance: str = "shared", reg: float = 1e-3,
            max_iter: int = 100, tol: float = 1e-6, n_init: int = 1, seed: int = 0) -> GMMFit:
    """Fit a K-component Gaussian mixture to the rows of ``x`` by EM; keep the best of ``n_init``.

    Args:
        x: (m, d) unlabelled points.
        k: number of components.
        covariance: ``"shared"`` (one Σ: fewer parameters, the study's default) or ``"full"``.
        reg: covariance penalty (see the module docstring); 0 gives the plain MLE.
        max_iter: EM iterations at most per start.
        tol: stop when the objective (mean per point) rises by less than this.
        n_init: seeded k-means++ starts; the fit with the highest final objective is kept.
        seed: seed of the starts.

    Returns:
        The fit, with its per-iteration objective in ``history``.

    Raises:
        ConfigError: a bad ``k``, ``covariance``, ``reg`` or fewer points than components.

    Examples:
        >>> rng = np.random.default_rng(0)
        >>> x = np.concatenate([rng.normal(-4, 1, (100, 2)), rng.normal(4, 1, (100, 2))])
        >>> fit = fit_gmm(x, 2, seed=0)
        >>> np.sort(fit.means[:, 0]).round(0)
        array([-4.,  4.])
        >>> bool(np.all(np.diff(fit.history) >= -1e-12))
        True
    """
    positive_int("k", k)
    check(covariance in COVARIANCE_TYPES, "covariance", covariance,
          f"must be one of {', '.join(COVARIANCE_TYPES)}")
    finite_float("reg", reg, low=0.0)
    positive_int("n_init", n_init)
    x = np.asarray(x, dtype=float)
    check(x.ndim == 2 and len(x) >= k, "x", getattr(x, "shape", None),
          f"must be (m, d) with m >= k = {k} points")
    rng = np.random.default_rng(seed)
    fits = [_run_em(x, k, rng, covariance == "shared", reg, max_iter, tol) for _ in range(n_init)]
    return max(fits, key=lambda f: f.history[-1])
