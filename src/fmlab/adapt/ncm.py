"""Nearest class mean: the exemplar-free continual-learning baseline.

From "A Simple Baseline that Questions the Use of Pretrained-Models in Continual Learning": keep
one running mean per class of frozen features and predict the nearest one. Because the state is
only per-class sums and counts, ``partial_fit`` on a stream of batches (new classes included, no
task boundaries, no stored exemplars) gives exactly the model that ``fit`` gives on the union.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from sklearn.utils._param_validation import StrOptions

from fmlab.adapt.base import (
    ArrayLike,
    Estimator,
    InputError,
    l2_normalize,
    threads_for,
    views_as_samples,
)
from fmlab.adapt.registry import register_estimator


@register_estimator("ncm", sweep_default=True, zeroshot_ensemble=True)
class NCM(Estimator):
    """Nearest class mean classifier.

    ``metric="cosine"``: features are L2-normalised, μ_k is the mean of the normalised features of
    class k and the score is cos(x̂ − c, μ_k − c), where c is the mean of all normalised training
    features seen so far when ``center=True`` (SimpleShot-style centring) and 0 otherwise.
    ``metric="euclidean"``: μ_k is the mean of the raw features and the score is −‖x − μ_k‖;
    centring does not change euclidean distances, so ``center`` is ignored there.
    Training views (V, N, D) are kept as samples.

    Args:
        metric: ``"cosine"`` or ``"euclidean"``.
        center: subtract the mean training feature before the cosine (SimpleShot).

    Examples:
        >>> import numpy as np
        >>> X = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.2, 0.8]]); y = np.array([0, 0, 1, 1])
        >>> ncm = NCM().fit(X, y)
        >>> ncm.predict(np.array([[0.7, 0.3], [0.1, 0.9]])), ncm.means_.shape
        (array([0, 1]), (2, 2))
    """

    views = "samples"
    _parameter_constraints: ClassVar[dict[str, list]] = {
        "metric": [StrOptions({"cosine", "euclidean"})],
        "center": ["boolean"],
    }

    def __init__(self, metric: str = "cosine", center: bool = False) -> None:
        self.metric = metric
        self.center = center

    def fit(self, X: ArrayLike, y: ArrayLike, X_val: ArrayLike | None = None,
            y_val: ArrayLike | None = None) -> NCM:
        """Forget everything and fit on (X, y); validation data is accepted and unused.

        Args:
            X: (N, D) features or (V, N, D) views (kept as samples).
            y: (N,) integer labels.
            X_val: validation features (only checked).
            y_val: validation labels (only checked).

        Returns:
            self.
        """
        for attr in ("classes_", "sums_", "counts_"):
            self.__dict__.pop(attr, None)
        self.partial_fit(X, y)
        if X_val is not None:
            self._check_val(X_val, y_val, torch.float64)
        return self

    def partial_fit(self, X: ArrayLike, y: ArrayLike, classes: ArrayLike | None = None) -> NCM:
        """Add a batch of samples, of known or new classes, to the running class means.

        Args:
            X: (N, D) features or (V, N, D) views.
            y: (N,) integer labels; new classes are added as they appear.
            classes: accepted for scikit-learn's ``partial_fit`` signature and unused (NCM
                needs no list of classes up front).

        Returns:
            self.
        """
        self._check_params()
        with threads_for(X.numel() if isinstance(X, torch.Tensor) else np.asarray(X).size):
            return self._partial_fit(X, y)

    def _partial_fit(self, X: ArrayLike, y: ArrayLike) -> NCM:
        fitted = hasattr(self, "classes_")
        d_before = self.n_features_in_ if fitted else None
        Xt, y_arr = self._check_train(X, y)
        if d_before is not None and self.n_features_in_ != d_before:
            self.n_features_in_ = d_before
            raise InputError(f"X has {Xt.shape[-1]} features, but NCM is expecting {d_before} "
                             "features as input")
        Xt = Xt.to(torch.float64)
        if self.metric == "cosine":
            Xt = l2_normalize(Xt)
        yt = torch.as_tensor(y_arr)
        Xs, ys = views_as_samples(Xt, yt)
        new_classes = np.unique(y_arr)
        if not fitted:
            self.classes_ = new_classes
            self.sums_ = torch.zeros(len(new_classes), Xs.shape[1], dtype=torch.float64)
            self.counts_ = torch.zeros(len(new_classes), dtype=torch.float64)
        else:
            merged = np.union1d(self.classes_, new_classes)
            if len(merged) != len(self.classes_):
                pos = torch.as_tensor(np.searchsorted(merged, self.classes_))
                sums = torch.zeros(len(merged), Xs.shape[1], dtype=torch.float64)
                counts = torch.zeros(len(merged), dtype=torch.float64)
                sums[pos] = self.sums_
                counts[pos] = self.counts_
                self.classes_, self.sums_, self.counts_ = merged, sums, counts
        idx = torch.as_tensor(np.searchsorted(self.classes_, ys.numpy()))
        self.sums_.index_add_(0, idx, Xs)
        self.counts_.index_add_(0, idx, torch.ones(len(idx), dtype=torch.float64))
        self.hyperparameters_ = {"metric": self.metric, "center": self.center}
        return self

    @property
    def means_(self) -> np.ndarray:
        """Class means (n_classes, D) in ``classes_`` order."""
        return (self.sums_ / self.counts_[:, None]).numpy()

    def _scores(self, X: torch.Tensor) -> torch.Tensor:
        means = self.sums_ / self.counts_[:, None]
        Xd = X.to(torch.float64)
        if self.metric == "euclidean":
            out = -torch.cdist(Xd, means)
        else:
            Xd = l2_normalize(Xd)
            if self.center:
                c = self.sums_.sum(0) / self.counts_.sum()
                Xd, means = Xd - c, means - c
            out = l2_normalize(Xd) @ l2_normalize(means).T
        return out.to(X.dtype)

    def decision_function(self, X: ArrayLike) -> np.ndarray:
        """cos(x, μ_k) for cosine, −‖x − μ_k‖ for euclidean.

        Args:
            X: (N, D) features.

        Returns:
            (N, n_classes) scores in ``classes_`` order.
        """
        return super().decision_function(X)

