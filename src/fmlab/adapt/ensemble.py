"""Blend any estimator with zero-shot scores: s = s_zs + α · s_method.

GDA's paper does this for its training-free classifier (α from {1e-4, …, 100} on validation data);
the same recipe applies to NCM, k-NN or a linear probe, so it is one wrapper rather than a flag on
each estimator.
"""

from __future__ import annotations

import numpy as np
import torch

from fmlab.adapt.base import ArrayLike, Estimator, accuracy_and_loss, select_best, threads_for
from fmlab.adapt.zeroshot import check_weights, zeroshot_scores
from fmlab.errors import DataError

DEFAULT_ALPHAS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)


class ZeroShotEnsemble(Estimator):
    """``estimator`` fused with 100 · cosine zero-shot scores from ``zeroshot_weights``.

    ``alpha=None`` picks α from ``alpha_grid`` on (X_val, y_val) (validation required).
    The inner estimator is fitted with the same arguments (views included) and must end up with
    ``classes_`` equal to 0..n_classes−1, the rows of ``zeroshot_weights``.
    """

    def __init__(self, estimator: Estimator, zeroshot_weights: ArrayLike,
                 alpha: float | None = None,
                 alpha_grid: tuple[float, ...] = DEFAULT_ALPHAS) -> None:
        self.estimator = estimator
        self.zeroshot_weights = zeroshot_weights
        self.alpha = alpha
        self.alpha_grid = tuple(alpha_grid)
        self._zs = check_weights(zeroshot_weights)

    @property
    def views(self) -> str:  # type: ignore[override]
        return self.estimator.views

    @property
    def needs_validation(self) -> bool:  # type: ignore[override]
        return self.alpha is None or self.estimator.needs_validation

    def fit(self, X: ArrayLike, y: ArrayLike, X_val: ArrayLike | None = None,
            y_val: ArrayLike | None = None) -> ZeroShotEnsemble:
        Xt, _ = self._check_train(X, y)
        with threads_for(Xt.numel() * self._zs.shape[0]):
            return self._fit_ensemble(Xt, X, y, X_val, y_val)

    def _fit_ensemble(self, Xt: torch.Tensor, X: ArrayLike, y: ArrayLike,
                      X_val: ArrayLike | None, y_val: ArrayLike | None) -> ZeroShotEnsemble:
        if self.n_features_in_ != self._zs.shape[1]:
            raise DataError(f"X has {self.n_features_in_} features but zeroshot_weights have "
                            f"{self._zs.shape[1]}")
        self.estimator.fit(X, y, X_val, y_val)
        self.classes_ = self.estimator.classes_
        if not np.array_equal(self.classes_, np.arange(self._zs.shape[0])):
            raise DataError(f"training labels must be exactly the classes 0..{self._zs.shape[0]-1}"
                            f" of zeroshot_weights, got {self.classes_[:10].tolist()}...")
        Xv, yv = self._check_val(X_val, y_val, Xt.dtype)
        if self.alpha is not None:
            self.alpha_ = float(self.alpha)
        else:
            assert Xv is not None and yv is not None
            alphas = torch.tensor(self.alpha_grid, dtype=torch.float64)
            s_zs = zeroshot_scores(Xv, self._zs).to(torch.float64)
            s_m = self.estimator._scores(Xv).to(torch.float64)
            acc, loss = accuracy_and_loss(s_zs + alphas[:, None, None] * s_m, yv)
            self.alpha_ = float(alphas[select_best(acc, loss)])
        self.hyperparameters_ = {"alpha": self.alpha_, **{
            f"base_{k}" if k == "alpha" else k: v
            for k, v in self.estimator.hyperparameters_.items()}}
        return self

    def _scores(self, X: torch.Tensor) -> torch.Tensor:
        return zeroshot_scores(X, self._zs) + self.alpha_ * self.estimator._scores(X)
