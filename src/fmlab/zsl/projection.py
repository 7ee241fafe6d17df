"""The embedding-projection baseline: ridge regression from features to class embeddings.

The DeViSE/ESZSL family in its simplest closed form: W = argmin ‖XW − A_y‖² + α‖W‖² over the
seen training features X (standardised with seen statistics) and the semantic vectors A_y of
their classes; a test feature is assigned to the class whose (unit) embedding has the largest
cosine with XW. Unseen classes need no training sample, only an embedding, which is why this is
the natural non-generative ZSL baseline.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F


class RidgeProjection:
    """fit / decision_function like scikit-learn, over global class indices.

    Args:
        alpha: the ridge strength α (on standardised features).

    Examples:
        >>> A = torch.eye(3)  # three classes, orthogonal embeddings
        >>> X = torch.cat([A[[0, 1]] * 2 + 0.01 * torch.randn(2, 3) for _ in range(20)])
        >>> y = np.array([0, 1] * 20)
        >>> m = RidgeProjection(alpha=1e-3).fit(X, y, A, seen=[0, 1], unseen=[2])
        >>> m.decision_function(torch.tensor([[0.0, 2.0, 0.0]])).argmax(1).tolist()
        [1]
    """

    def __init__(self, alpha: float = 1.0) -> None:
        self.alpha = float(alpha)

    def fit(self, X: torch.Tensor, y: np.ndarray, semantics: torch.Tensor, seen: Sequence[int],
            unseen: Sequence[int]) -> RidgeProjection:
        """Fit W on seen features ``X`` (N, D) with global labels ``y`` and embeddings (K, S)."""
        X = torch.as_tensor(X, dtype=torch.float64)
        self.mean_, self.std_ = X.mean(0), X.std(0).clamp_min(1e-6)
        Xs = (X - self.mean_) / self.std_
        self.semantics_ = F.normalize(semantics.double(), dim=1)
        target = self.semantics_[torch.as_tensor(np.asarray(y), dtype=torch.int64)]
        gram = Xs.T @ Xs + self.alpha * torch.eye(Xs.shape[1], dtype=Xs.dtype)
        self.W_ = torch.linalg.solve(gram, Xs.T @ target)
        self.unseen_ = list(unseen)
        return self

    def decision_function(self, X: torch.Tensor) -> np.ndarray:
        """Cosine of the projected features with every class embedding: (N, K)."""
        proj = ((torch.as_tensor(X, dtype=torch.float64) - self.mean_) / self.std_) @ self.W_
        return (F.normalize(proj, dim=1) @ self.semantics_.T).numpy()

    def zsl_decision_function(self, X: torch.Tensor) -> np.ndarray:
        """Scores over the unseen classes only: (N, U), column j = ``unseen[j]``."""
        return self.decision_function(X)[:, self.unseen_]
