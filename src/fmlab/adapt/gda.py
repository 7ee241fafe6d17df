"""Training-free Gaussian discriminant analysis ("A Hard-to-Beat Baseline for Training-free
CLIP-based Adaptation", ICLR 2024).

Class-conditional Gaussians with one shared covariance give a *linear* classifier in closed form:
s_k(x) = xᵀΣ⁻¹μ_k − ½ μ_kᵀΣ⁻¹μ_k + log π_k. With a handful of shots per class the sample
covariance is singular, so the precision comes from a shrinkage estimator; the paper's choice
("ks") is Σ⁻¹ = D · pinv((N−1)·S + tr(S)·I). Ledoit–Wolf and OAS are offered as principled
alternatives; all three are written here from their formulas.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import torch
from sklearn.utils._param_validation import StrOptions

from fmlab.adapt.base import Estimator, ParameterError, views_as_samples
from fmlab.adapt.registry import register_estimator

COVARIANCES = ("ks", "ledoit_wolf", "oas", "empirical")


def ledoit_wolf_shrinkage(Xc: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Ledoit–Wolf (2004) shrunk covariance of centred data ``Xc`` (n, p), and its shrinkage.

    With S = XcᵀXc/n and m = tr(S)/p: d² = ‖S − mI‖²_F/p, b̄² = (Σ_i‖x_i‖⁴/n − ‖S‖²_F)/(n·p),
    b² = min(b̄², d²); Σ = (1 − b²/d²)·S + (b²/d²)·m·I.
    """
    n, p = Xc.shape
    S = Xc.T @ Xc / n
    m = torch.trace(S) / p
    eye = torch.eye(p, dtype=S.dtype)
    d2 = ((S - m * eye) ** 2).sum() / p
    b2_bar = ((Xc.pow(2).sum(1) ** 2).sum() / n - (S**2).sum()) / (n * p)
    b2 = torch.minimum(b2_bar, d2)
    shrink = 0.0 if float(d2) == 0.0 else float(b2 / d2)
    return (1 - shrink) * S + shrink * m * eye, shrink


def oas_shrinkage(Xc: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Oracle approximating shrinkage (Chen et al. 2010, eq. 23, without the 2/p terms as in
    scikit-learn) of centred data ``Xc`` (n, p), and its shrinkage.

    ρ = min(1, (tr(S²) + tr(S)²) / ((n + 1)·(tr(S²) − tr(S)²/p))); Σ = (1 − ρ)·S + ρ·tr(S)/p·I.
    """
    n, p = Xc.shape
    S = Xc.T @ Xc / n
    tr_s2 = (S**2).sum()  # tr(S Sᵀ), S symmetric
    tr_s = torch.trace(S)
    num = tr_s2 + tr_s**2
    den = (n + 1) * (tr_s2 - tr_s**2 / p)
    shrink = 1.0 if float(den) == 0.0 else min(float(num / den), 1.0)
    eye = torch.eye(p, dtype=S.dtype)
    return (1 - shrink) * S + shrink * (tr_s / p) * eye, shrink


def gda_precision(Xc: torch.Tensor, covariance: str) -> tuple[torch.Tensor, dict]:
    """Precision matrix (p, p) from pooled class-centred features, computed in float64."""
    Xc = Xc.to(torch.float64)
    n, p = Xc.shape
    if float(Xc.abs().max()) == 0.0:
        # Every class is a single point (1 shot, no views): no covariance information at all.
        # Every shrinkage estimator collapses to 0 here; the identity is its direction in the
        # limit S -> 0, giving euclidean nearest-class-mean scores xᵀμ_k − ½‖μ_k‖².
        return torch.eye(p, dtype=Xc.dtype), {"degenerate_covariance": True}
    if covariance == "ks":
        # S with the (N-1) normaliser, as torch.cov; (N-1)·S is then just the scatter matrix.
        scatter = Xc.T @ Xc - torch.outer(Xc.sum(0), Xc.sum(0)) / n
        tr_s = torch.trace(scatter) / max(n - 1, 1)
        prec = p * torch.linalg.pinv(scatter + tr_s * torch.eye(p, dtype=Xc.dtype),
                                     hermitian=True)
        return prec, {}
    if covariance == "empirical":
        Xm = Xc - Xc.mean(0)
        return torch.linalg.pinv(Xm.T @ Xm / max(n - 1, 1), hermitian=True), {}
    Xm = Xc - Xc.mean(0)  # pooled class-centred data already has mean 0; keep it exact
    if covariance == "ledoit_wolf":
        cov, s = ledoit_wolf_shrinkage(Xm)
    else:
        cov, s = oas_shrinkage(Xm)
    return torch.linalg.pinv(cov, hermitian=True), {"shrinkage": s}


@register_estimator("gda", sweep_default=True, zeroshot_ensemble=True)
class GDA(Estimator):
    """Gaussian discriminant analysis with a shared, shrunk covariance.

    ``covariance``: ``"ks"`` (the paper's estimator), ``"ledoit_wolf"``, ``"oas"`` or
    ``"empirical"`` (pinv of the plain covariance; a baseline). ``priors``: ``"uniform"`` (the
    paper), ``"empirical"`` (class frequencies), or an array of class priors in ``classes_``
    order. Training views (V, N, D) are all kept as samples, as in the paper. The fitted linear
    classifier is ``coef_`` (n_classes, D) and ``intercept_`` (n_classes,).

    Args:
        covariance: the precision estimator (see above).
        priors: ``"uniform"``, ``"empirical"`` or (n_classes,) positive numbers.

    Examples:
        >>> import numpy as np
        >>> X = np.array([[0.0, 1.0], [0.2, 1.1], [1.0, 0.0], [1.1, 0.3]]); y = np.array([0, 0, 1, 1])
        >>> gda = GDA().fit(X, y)
        >>> gda.predict(np.array([[0.1, 0.9], [1.0, 0.1]])), gda.coef_.shape
        (array([0, 1]), (2, 2))
    """

    views = "samples"
    _parameter_constraints: ClassVar[dict[str, list]] = {
        "covariance": [StrOptions(set(COVARIANCES))],
        "priors": [StrOptions({"uniform", "empirical"}), "array-like"],
    }

    def __init__(self, covariance: str = "ks", priors: str | np.ndarray = "uniform") -> None:
        self.covariance = covariance
        self.priors = priors

    def _fit(self, X: torch.Tensor, y: torch.Tensor, X_val: torch.Tensor | None,
             y_val: torch.Tensor | None) -> None:
        Xs, ys = views_as_samples(X.to(torch.float64), y)
        n_cls = len(self.classes_)
        counts = torch.bincount(ys, minlength=n_cls).to(torch.float64)
        means = torch.zeros(n_cls, Xs.shape[1], dtype=torch.float64).index_add_(0, ys, Xs)
        means /= counts[:, None]
        prec, info = gda_precision(Xs - means[ys], self.covariance)
        log_prior = self._log_priors(counts)
        W = means @ prec  # (C, D): row k is (Σ⁻¹ μ_k)ᵀ, Σ⁻¹ symmetric
        self.means_ = means.numpy()
        self.precision_ = prec.numpy()
        self.coef_ = W.numpy()
        self.intercept_ = (-0.5 * (W * means).sum(1) + log_prior).numpy()
        self.hyperparameters_ = {"covariance": self.covariance, **info}

    def _log_priors(self, counts: torch.Tensor) -> torch.Tensor:
        n_cls = len(counts)
        if isinstance(self.priors, str):
            if self.priors == "uniform":
                return torch.full((n_cls,), -math.log(n_cls), dtype=torch.float64)
            return torch.log(counts / counts.sum())
        pri = torch.as_tensor(np.asarray(self.priors, dtype=np.float64))
        if pri.shape != (n_cls,) or bool((pri <= 0).any()):
            raise ParameterError(f"GDA priors must be {n_cls} positive numbers (one per class), got "
                              f"shape {tuple(pri.shape)}")
        return torch.log(pri / pri.sum())

    def _scores(self, X: torch.Tensor) -> torch.Tensor:
        W = torch.as_tensor(self.coef_).to(X.dtype)
        return X @ W.T + torch.as_tensor(self.intercept_).to(X.dtype)
