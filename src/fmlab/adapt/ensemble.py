"""Blend any estimator with zero-shot scores: s = s_zs + α · s_method.

GDA's paper does this for its training-free classifier (α from {1e-4, …, 100} on validation data);
the same recipe applies to NCM, k-NN or a linear probe, so it is one wrapper rather than a flag on
each estimator.
"""

from __future__ import annotations

from numbers import Real
from typing import ClassVar

import numpy as np
import torch
from sklearn.base import clone
from sklearn.utils._param_validation import HasMethods, Interval

from fmlab.adapt.base import (
    ArrayLike,
    Estimator,
    InputError,
    accuracy_and_loss,
    select_best,
    threads_for,
)
from fmlab.adapt.zeroshot import check_weights, zeroshot_scores

DEFAULT_ALPHAS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)


class ZeroShotEnsemble(Estimator):
    """``estimator`` fused with 100 · cosine zero-shot scores from ``zeroshot_weights``.

    ``alpha=None`` picks α from ``alpha_grid`` on (X_val, y_val) (validation required).
    A clone of the inner estimator is fitted (``estimator_``) with the same arguments (views
    included) and must end up with ``classes_`` equal to 0..n_classes−1, the rows of
    ``zeroshot_weights``. The sweep's ``<name>+zs`` methods are this wrapper (see
    :meth:`~fmlab.adapt.base.Estimator.with_zeroshot`).

    Args:
        estimator: an unfitted fmlab estimator.
        zeroshot_weights: (n_classes, D) text class weights.
        alpha: the weight of the estimator's scores, or None to choose it.
        alpha_grid: the α values tried.

    Examples:
        >>> import numpy as np
        >>> from fmlab.adapt import NCM
        >>> X = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.2, 0.8]]); y = np.array([0, 0, 1, 1])
        >>> ens = ZeroShotEnsemble(NCM(), np.eye(2), alpha=1.0).fit(X, y)
        >>> ens.predict(np.array([[0.8, 0.2]])), ens.estimator_.classes_
        (array([0]), array([0, 1]))
    """

    _parameter_constraints: ClassVar[dict[str, list]] = {
        "estimator": [HasMethods(["fit", "_scores"])],
        "zeroshot_weights": ["array-like"],
        "alpha": [Interval(Real, None, None, closed="neither"), None],
        "alpha_grid": ["array-like"],
    }

    def __init__(self, estimator: Estimator, zeroshot_weights: ArrayLike,
                 alpha: float | None = None,
                 alpha_grid: tuple[float, ...] = DEFAULT_ALPHAS) -> None:
        self.estimator = estimator
        self.zeroshot_weights = zeroshot_weights
        self.alpha = alpha
        self.alpha_grid = alpha_grid

    @property
    def views(self) -> str:  # type: ignore[override]
        return self.estimator.views

    @property
    def needs_validation(self) -> bool:  # type: ignore[override]
        return self.alpha is None or self.estimator.needs_validation

    def fit(self, X: ArrayLike, y: ArrayLike, X_val: ArrayLike | None = None,
            y_val: ArrayLike | None = None) -> ZeroShotEnsemble:
        """Fit a clone of the inner estimator, then choose α (see :meth:`Estimator.fit`).

        Args:
            X: (N, D) features or (V, N, D) views.
            y: (N,) labels, exactly the classes 0..n_classes−1.
            X_val: validation features (required when ``alpha`` is None).
            y_val: validation labels.

        Returns:
            self.
        """
        self._check_params()
        self.zs_weights_ = check_weights(self.zeroshot_weights)
        Xt, _ = self._check_train(X, y)
        with threads_for(Xt.numel() * self.zs_weights_.shape[0]):
            return self._fit_ensemble(Xt, X, y, X_val, y_val)

    def _fit_ensemble(self, Xt: torch.Tensor, X: ArrayLike, y: ArrayLike,
                      X_val: ArrayLike | None, y_val: ArrayLike | None) -> ZeroShotEnsemble:
        zs = self.zs_weights_
        if self.n_features_in_ != zs.shape[1]:
            raise InputError(f"X has {self.n_features_in_} features but zeroshot_weights have "
                             f"{zs.shape[1]}")
        self.estimator_ = clone(self.estimator).fit(X, y, X_val, y_val)
        self.classes_ = self.estimator_.classes_
        if not np.array_equal(self.classes_, np.arange(zs.shape[0])):
            raise InputError(f"training labels must be exactly the classes 0..{zs.shape[0]-1}"
                             f" of zeroshot_weights, got {self.classes_[:10].tolist()}...")
        Xv, yv = self._check_val(X_val, y_val, Xt.dtype)
        if self.alpha is not None:
            self.alpha_ = float(self.alpha)
        else:
            assert Xv is not None and yv is not None
            alphas = torch.tensor(tuple(self.alpha_grid), dtype=torch.float64)
            s_zs = zeroshot_scores(Xv, zs).to(torch.float64)
            s_m = self.estimator_._scores(Xv).to(torch.float64)
            acc, loss = accuracy_and_loss(s_zs + alphas[:, None, None] * s_m, yv)
            self.alpha_ = float(alphas[select_best(acc, loss)])
        self.hyperparameters_ = {"alpha": self.alpha_, **{
            f"base_{k}" if k == "alpha" else k: v
            for k, v in self.estimator_.hyperparameters_.items()}}
        return self

    def _scores(self, X: torch.Tensor) -> torch.Tensor:
        return zeroshot_scores(X, self.zs_weights_) + self.alpha_ * self.estimator_._scores(X)
