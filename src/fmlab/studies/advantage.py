"""The provable advantage of unsupervised pre-training, in simulation (papers.md 37; Ge, Tang, Fan
& Jin, ICLR 2024).

The theorem: with a latent-variable model p_φ(x, z) and a downstream map p_ψ(y | z), MLE of φ on
m unlabelled points followed by ERM of ψ on n labelled points reaches excess risk
Õ(√(C_Φ/m) + √(C_Ψ/n)) under a "κ-informative" condition (the label depends on x only through
z), against Õ(√(C_{Φ∘Ψ}/n)) for supervised learning on the n labelled points alone. Two cases,
each with a knob that breaks the informative condition:

* **GMM** — x | z ~ N(μ_z, I) in R^d, z uniform over K components; the label is y = π(z) for a
  fixed permutation π with probability 1 − ``knob`` and uniform otherwise, so at ``knob = 1``
  the label is independent of the component (and of x). Pre-training = EM
  (:func:`~fmlab.studies.em.fit_gmm`); ERM = the 0-1-loss minimiser over maps components →
  labels applied to the MAP component (majority label of the labelled points in each
  component). Baselines: logistic regression and QDA on the n labelled points.
* **Factor model** — x = A z + σ ε with z ∈ R^r, d ≫ r; y = √(1−knob)·βᵀz + √knob·u + τ ξ with u
  independent of x. Pre-training = PCA on the m unlabelled points (the factor model's MLE
  subspace); ERM = ridge regression (leave-one-out choice of the penalty) on the r
  projections. Baseline: the same ridge on the raw d-dim x, so only the representation differs
  (plain least squares on r features is unregularised and loses to ridge at n ≈ r for that
  reason alone). Error = test mean squared error.

Note on the rate: the paper's abstract states Õ(√(C_Φ/m) + √(C_Ψ/n)); papers.md 37 writes it
without the square roots. Both are upper bounds; the study fits the observed slopes and reports
them against −1/2 and −1 (see :mod:`fmlab.studies.advantage_report`).

Errors come with the Bayes error of the same test set, so excess errors are measured exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp

from fmlab.studies.em import fit_gmm
from fmlab.utils.validation import check, finite_float, positive_int

__all__ = ["FactorProblem", "GMMProblem", "erm_label_map", "factor_errors", "fit_pca", "fit_qda",
           "least_squares_mse", "make_factor", "make_gmm", "pretrain_erm_error", "ridge_mse",
           "supervised_errors"]


@dataclass
class GMMProblem:
    """A K-component isotropic Gaussian mixture with a label channel P(y | z)."""

    means: np.ndarray  # (K, d)
    perm: np.ndarray  # (K,) the label of each component when the label is informative
    knob: float  # probability that the label is replaced by a uniform draw

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(x, y, z)``: n points, their labels and their (hidden) components."""
        k, d = self.means.shape
        z = rng.integers(k, size=n)
        x = self.means[z] + rng.standard_normal((n, d))
        y = self.perm[z].copy()
        flip = rng.random(n) < self.knob
        y[flip] = rng.integers(k, size=int(flip.sum()))
        return x, y, z

    def label_given_component(self) -> np.ndarray:
        """(K, K) P(y | z): (1 − knob)·1[y = π(z)] + knob/K."""
        k = len(self.perm)
        return (1 - self.knob) * np.eye(k)[self.perm] + self.knob / k

    def bayes_predict(self, x: np.ndarray) -> np.ndarray:
        """argmax_y Σ_z p(z | x) P(y | z) with the true parameters."""
        lj = -0.5 * ((x[:, None, :] - self.means[None]) ** 2).sum(-1)
        post = np.exp(lj - logsumexp(lj, axis=1, keepdims=True))
        return np.argmax(post @ self.label_given_component(), axis=1)


def make_gmm(d: int, k: int, separation: float, knob: float, seed: int) -> GMMProblem:
    """Means at distance ``separation`` from the origin in random directions, a random π.

    Args:
        d: dimension; k: components; separation: ‖μ_k‖ (noise is N(0, I)).
        knob: 0 → y = π(z); 1 → y independent of z.
        seed: the problem's seed.

    Returns:
        The problem.

    Examples:
        >>> p = make_gmm(2, 3, 4.0, 1.0, seed=0)
        >>> p.label_given_component().round(3)[0]
        array([0.333, 0.333, 0.333])
    """
    positive_int("d", d)
    positive_int("K", k)
    finite_float("separation", separation, low=0.0)
    finite_float("knob", knob, low=0.0, high=1.0)
    rng = np.random.default_rng(seed)
    u = rng.standard_normal((k, d))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    return GMMProblem(separation * u, rng.permutation(k), float(knob))


def erm_label_map(components: np.ndarray, y: np.ndarray, k: int, n_labels: int) -> np.ndarray:
    """The 0-1-loss ERM over maps f: components → labels, given each point's MAP component.

    The empirical risk Σ_i 1[f(c_i) ≠ y_i] splits over components, so the minimiser takes the
    majority label in each component; a component without labelled points gets the overall
    majority label (ties: the smallest label).

    Examples:
        >>> erm_label_map(np.array([0, 0, 1, 2]), np.array([2, 2, 0, 1]), k=4, n_labels=3)
        array([2, 0, 1, 2])
    """
    counts = np.zeros((k, n_labels))
    np.add.at(counts, (components, y), 1.0)
    overall = int(np.argmax(counts.sum(0)))
    f = np.argmax(counts, axis=1)
    f[counts.sum(1) == 0] = overall
    return f


def pretrain_erm_error(x_unlab: np.ndarray, x_lab: np.ndarray, y_lab: np.ndarray,
                       x_test: np.ndarray, y_test: np.ndarray, k: int, *, covariance: str = "shared",
                       n_init: int = 2, seed: int = 0) -> float:
    """Test error of EM on the unlabelled points, then the ERM label map on the labelled ones."""
    fit = fit_gmm(x_unlab, k, covariance=covariance, n_init=n_init, seed=seed)
    f = erm_label_map(np.argmax(fit.log_joint(x_lab), axis=1), y_lab, k, k)
    return float(np.mean(f[np.argmax(fit.log_joint(x_test), axis=1)] != y_test))


def fit_qda(x: np.ndarray, y: np.ndarray, shrink: float = 0.1):
    """A QDA predictor with covariances shrunk toward the identity: Σ_c = (1−s)·S_c + s·I.

    Shrinkage keeps a class with one or a few points usable (its S_c is singular); a label
    absent from the labelled points is never predicted.

    Returns:
        ``predict(x) -> labels``.

    Examples:
        >>> x = np.array([[0.0], [0.2], [5.0], [5.2]])
        >>> fit_qda(x, np.array([0, 0, 1, 1]))(np.array([[0.1], [5.1]]))
        array([0, 1])
    """
    d = x.shape[1]
    present = np.unique(y)
    params = []
    for c in present:
        xc = x[y == c]
        mu = xc.mean(0)
        s = (xc - mu).T @ (xc - mu) / len(xc)
        cov = (1 - shrink) * s + shrink * np.eye(d)
        chol = np.linalg.cholesky(cov + 1e-9 * np.eye(d))
        params.append((mu, chol, np.log(len(xc) / len(x))))

    def predict(xt: np.ndarray) -> np.ndarray:
        scores = np.stack([prior - np.log(np.diag(L)).sum()
                           - 0.5 * (np.linalg.solve(L, (xt - mu).T) ** 2).sum(0)
                           for mu, L, prior in params], axis=1)
        return present[np.argmax(scores, axis=1)]

    return predict


def supervised_errors(x_lab: np.ndarray, y_lab: np.ndarray, x_test: np.ndarray,
                      y_test: np.ndarray) -> dict[str, float]:
    """Test errors of the supervised-only baselines on the n labelled points.

    Returns:
        ``{"logreg": ..., "qda": ...}`` (one labelled class: both predict it everywhere).
    """
    from sklearn.linear_model import LogisticRegression

    if len(np.unique(y_lab)) < 2:
        err = float(np.mean(y_test != y_lab[0]))
        return {"logreg": err, "qda": err}
    lr = LogisticRegression(C=1.0, max_iter=500).fit(x_lab, y_lab)
    return {"logreg": float(np.mean(lr.predict(x_test) != y_test)),
            "qda": float(np.mean(fit_qda(x_lab, y_lab)(x_test) != y_test))}


@dataclass
class FactorProblem:
    """x = A z + σ ε (z ∈ R^r, ε ∈ R^d standard normal); y = √(1−knob)·βᵀz + √knob·u + τ ξ."""

    loadings: np.ndarray  # A, (d, r)
    beta: np.ndarray  # (r,) unit norm
    noise: float  # σ
    label_noise: float  # τ
    knob: float

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``(x, y)``: n points and their real-valued labels."""
        d, r = self.loadings.shape
        z = rng.standard_normal((n, r))
        x = z @ self.loadings.T + self.noise * rng.standard_normal((n, d))
        y = (np.sqrt(1 - self.knob) * z @ self.beta + np.sqrt(self.knob) * rng.standard_normal(n)
             + self.label_noise * rng.standard_normal(n))
        return x, y

    def bayes_predict(self, x: np.ndarray) -> np.ndarray:
        """E[y | x] = √(1−knob)·βᵀ E[z | x], E[z | x] = (AᵀA + σ²I)⁻¹Aᵀx."""
        a = self.loadings
        ez = np.linalg.solve(a.T @ a + self.noise ** 2 * np.eye(a.shape[1]), a.T @ x.T).T
        return np.sqrt(1 - self.knob) * ez @ self.beta

    def bayes_mse(self) -> float:
        """E[(y − E[y|x])²] = (1−knob)·βᵀ(I + AᵀA/σ²)⁻¹β + knob + τ²."""
        r = len(self.beta)
        post_cov = np.linalg.inv(np.eye(r) + self.loadings.T @ self.loadings / self.noise ** 2)
        return float((1 - self.knob) * self.beta @ post_cov @ self.beta + self.knob
                     + self.label_noise ** 2)


def make_factor(d: int, r: int, signal: float, knob: float, seed: int,
                label_noise: float = 0.5) -> FactorProblem:
    """Random loadings with singular values ``signal``·√d (a strong factor structure), unit noise.

    Examples:
        >>> p = make_factor(20, 2, 1.0, 1.0, seed=0)
        >>> round(p.bayes_mse(), 3)  # knob = 1: y is independent of x
        1.25
    """
    positive_int("d", d)
    positive_int("r", r)
    check(r <= d, "r", r, f"must be <= d ({d})")
    finite_float("signal", signal, low=0.0, low_open=True)
    finite_float("knob", knob, low=0.0, high=1.0)
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((d, r)))
    beta = rng.standard_normal(r)
    return FactorProblem(signal * np.sqrt(d) * q, beta / np.linalg.norm(beta), 1.0,
                         float(label_noise), float(knob))


def fit_pca(x_unlab: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray]:
    """Pre-training of the factor model: the mean and top-r principal directions (d, r).

    Examples:
        >>> x = np.c_[np.arange(10.0), np.zeros(10)]
        >>> np.abs(fit_pca(x, 1)[1]).ravel().tolist()
        [1.0, 0.0]
    """
    mean = x_unlab.mean(0)
    _, _, vt = np.linalg.svd(x_unlab - mean, full_matrices=False)
    return mean, vt[:r].T


def least_squares_mse(f_lab: np.ndarray, y_lab: np.ndarray, f_test: np.ndarray,
                      y_test: np.ndarray) -> float:
    """Test MSE of (min-norm) least squares with an intercept: the downstream ERM."""
    a = np.c_[np.ones(len(f_lab)), f_lab]
    w = np.linalg.lstsq(a, y_lab, rcond=None)[0]
    return float(np.mean((np.c_[np.ones(len(f_test)), f_test] @ w - y_test) ** 2))


def ridge_mse(x_lab: np.ndarray, y_lab: np.ndarray, x_test: np.ndarray, y_test: np.ndarray) -> float:
    """Test MSE of ridge with an intercept, its penalty picked by leave-one-out over 10⁻³…10⁴.

    One labelled point: its label is predicted everywhere.
    """
    from sklearn.linear_model import RidgeCV

    if len(x_lab) < 2:
        return float(np.mean((y_lab[0] - y_test) ** 2))
    ridge = RidgeCV(alphas=np.logspace(-3, 4, 15)).fit(x_lab, y_lab)
    return float(np.mean((ridge.predict(x_test) - y_test) ** 2))


def factor_errors(x_unlab: np.ndarray, x_lab: np.ndarray, y_lab: np.ndarray, x_test: np.ndarray,
                  y_test: np.ndarray, r: int) -> dict[str, float]:
    """Test MSE of PCA(r) on the unlabelled points + ridge on the projections, and of ridge on
    raw x.

    Returns:
        ``{"pretrain_erm": ..., "ridge": ...}``.
    """
    mean, proj = fit_pca(x_unlab, r)
    return {"pretrain_erm": ridge_mse((x_lab - mean) @ proj, y_lab, (x_test - mean) @ proj, y_test),
            "ridge": ridge_mse(x_lab, y_lab, x_test, y_test)}
