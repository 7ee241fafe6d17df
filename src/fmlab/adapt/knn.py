"""Weighted cosine k-nearest neighbours, DINO's k-NN evaluation of frozen features.

Each of the k most similar training features votes for its class with weight exp(sim / T); the
class scores are the summed votes. A low temperature makes the closest neighbours dominate.
"""

from __future__ import annotations

import numpy as np
import torch

from fmlab.adapt.base import ArrayLike, Estimator, l2_normalize, views_mean_normalized
from fmlab.errors import ConfigError


class KNN(Estimator):
    """Cosine k-NN with exp(sim / temperature) votes.

    ``k`` larger than the training set uses every training sample. Training views (V, N, D) are
    averaged into one key per image (as Tip-Adapter does), so k counts images, not views.
    ``predict_proba`` is the normalised vote mass. Queries are scored in chunks of ``chunk_size``
    so a large test set never needs an (N_test, N_train) matrix at once.
    """

    views = "mean"

    def __init__(self, k: int = 20, temperature: float = 0.07, chunk_size: int = 4096) -> None:
        if int(k) != k or k < 1:
            raise ConfigError(f"KNN k must be a positive integer, got {k!r}")
        if not temperature > 0:
            raise ConfigError(f"KNN temperature must be > 0, got {temperature!r}")
        self.k = int(k)
        self.temperature = float(temperature)
        self.chunk_size = int(chunk_size)

    def _fit(self, X: torch.Tensor, y: torch.Tensor, X_val: torch.Tensor | None,
             y_val: torch.Tensor | None) -> None:
        self.keys_ = views_mean_normalized(X)
        self.key_labels_ = y
        self.k_ = min(self.k, self.keys_.shape[0])
        self.hyperparameters_ = {"k": self.k_, "temperature": self.temperature}

    def _scores(self, X: torch.Tensor) -> torch.Tensor:
        keys = self.keys_.to(X.dtype)
        n_cls = len(self.classes_)
        out = torch.zeros(X.shape[0], n_cls, dtype=X.dtype)
        for start in range(0, X.shape[0], self.chunk_size):
            q = l2_normalize(X[start:start + self.chunk_size])
            sim, idx = (q @ keys.T).topk(self.k_, dim=1)
            w = (sim / self.temperature).exp()
            out[start:start + len(q)].scatter_add_(1, self.key_labels_[idx], w)
        return out

    def predict_proba(self, X: ArrayLike) -> np.ndarray:
        votes = self.decision_function(X)
        return votes / votes.sum(axis=1, keepdims=True)
