"""Weighted cosine k-nearest neighbours, DINO's k-NN evaluation of frozen features.

Each of the k most similar training features votes for its class with weight exp(sim / T); the
class scores are the summed votes. A low temperature makes the closest neighbours dominate.
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import ClassVar

import numpy as np
import torch
from sklearn.utils._param_validation import Interval

from fmlab.adapt.base import ArrayLike, Estimator, l2_normalize, views_mean_normalized
from fmlab.adapt.registry import register_estimator


@register_estimator("knn", sweep_default=True, zeroshot_ensemble=True)
class KNN(Estimator):
    """Cosine k-NN with exp(sim / temperature) votes.

    ``k`` larger than the training set uses every training sample. Training views (V, N, D) are
    averaged into one key per image (as Tip-Adapter does), so k counts images, not views.
    ``predict_proba`` is the normalised vote mass. Queries are scored in chunks of ``chunk_size``
    so a large test set never needs an (N_test, N_train) matrix at once.

    Args:
        k: neighbours per query (an integer >= 1).
        temperature: vote sharpness (> 0).
        chunk_size: queries scored at once.

    Examples:
        >>> import numpy as np
        >>> X = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.2, 0.8]]); y = np.array([0, 0, 1, 1])
        >>> KNN(k=2).fit(X, y).predict(np.array([[0.8, 0.2]]))
        array([0])
    """

    views = "mean"
    _parameter_constraints: ClassVar[dict[str, list]] = {
        "k": [Interval(Integral, 1, None, closed="left")],
        "temperature": [Interval(Real, 0, None, closed="neither")],
        "chunk_size": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(self, k: int = 20, temperature: float = 0.07, chunk_size: int = 4096) -> None:
        self.k = k
        self.temperature = temperature
        self.chunk_size = chunk_size

    def _fit(self, X: torch.Tensor, y: torch.Tensor, X_val: torch.Tensor | None,
             y_val: torch.Tensor | None) -> None:
        self.keys_ = views_mean_normalized(X)
        self.key_labels_ = y
        self.k_ = min(int(self.k), self.keys_.shape[0])
        self.hyperparameters_ = {"k": self.k_, "temperature": float(self.temperature)}

    def _scores(self, X: torch.Tensor) -> torch.Tensor:
        keys = self.keys_.to(X.dtype)
        n_cls = len(self.classes_)
        out = torch.zeros(X.shape[0], n_cls, dtype=X.dtype)
        chunk, temperature = int(self.chunk_size), float(self.temperature)
        for start in range(0, X.shape[0], chunk):
            q = l2_normalize(X[start:start + chunk])
            sim, idx = (q @ keys.T).topk(self.k_, dim=1)
            w = (sim / temperature).exp()
            out[start:start + len(q)].scatter_add_(1, self.key_labels_[idx], w)
        return out

    def predict_proba(self, X: ArrayLike) -> np.ndarray:
        """The normalised vote mass per class.

        Args:
            X: (N, D) features.

        Returns:
            (N, n_classes) vote fractions, rows summing to 1.
        """
        votes = self.decision_function(X)
        return votes / votes.sum(axis=1, keepdims=True)
