"""Streaming ``update(features[, labels]) / compute()`` wrappers, one per metric family.

Generators produce samples batch by batch; these classes let a caller feed features as they come.
FID and intra-FID keep only running float64 statistics (mean and the centred sum of outer
products, merged batch by batch with Chan et al.'s pairwise update, which stays accurate when the
features have a large common offset), so 50k features are never held at once. KID, IS and PRDC
need the samples themselves (random subsets, splits, neighbours) and buffer them.

Every ``update`` takes ``real=True`` for reference features and ``real=False`` (default) for
generated ones; a reference given to the constructor replaces the real side.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fmlab.errors import DataError
from fmlab.metrics._checks import as_features, as_labels
from fmlab.metrics._types import MeanStd
from fmlab.metrics.classifier_score import inception_score
from fmlab.metrics.frechet import frechet_distance
from fmlab.metrics.kernel_distance import kid
from fmlab.metrics.neighbours import prdc


class FeatureStats:
    """Running float64 mean and covariance of features seen in batches."""

    def __init__(self) -> None:
        self.n = 0
        self.mean: np.ndarray | None = None
        self._m2: np.ndarray | None = None  # sum of outer products of centred features

    @property
    def dim(self) -> int | None:
        return None if self.mean is None else int(self.mean.shape[0])

    def update(self, features: Any, name: str = "features") -> FeatureStats:
        x = as_features(features, name, min_rows=0)
        if x.shape[0] == 0:
            return self
        if self.mean is not None and x.shape[1] != self.dim:
            raise DataError(
                f"feature dimensions differ: {name} have {x.shape[1]}, earlier batches had "
                f"{self.dim}"
            )
        b_mean = x.mean(axis=0)
        xc = x - b_mean
        self._merge(x.shape[0], b_mean, xc.T @ xc)
        return self

    def merge(self, other: FeatureStats) -> FeatureStats:
        """Fold another accumulator into this one (e.g. from another worker)."""
        if other.n:
            if self.mean is not None and other.dim != self.dim:
                raise DataError(f"feature dimensions differ: {self.dim} vs {other.dim}")
            self._merge(other.n, other.mean, other._m2)
        return self

    def _merge(self, n_b: int, mean_b: np.ndarray, m2_b: np.ndarray) -> None:
        if self.n == 0:
            self.n, self.mean, self._m2 = n_b, mean_b.copy(), m2_b.copy()
            return
        n = self.n + n_b
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (n_b / n)
        self._m2 = self._m2 + m2_b + np.outer(delta, delta) * (self.n * n_b / n)
        self.n = n

    def compute(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean, unbiased covariance); needs at least two samples."""
        if self.n < 2:
            raise DataError(f"need at least 2 samples for a covariance, got {self.n}")
        return self.mean.copy(), self._m2 / (self.n - 1)


def _stats_tuple(ref: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(ref, FeatureStats):
        return ref.compute()
    if hasattr(ref, "mu") and hasattr(ref, "sigma"):
        return np.asarray(ref.mu), np.asarray(ref.sigma)
    try:
        mu, sigma = ref
    except (TypeError, ValueError):
        raise DataError(f"{name}: expected (mu, sigma) or FeatureStats, got {type(ref)}") from None
    return np.asarray(mu, dtype=np.float64), np.asarray(sigma, dtype=np.float64)


class StreamingFID:
    """FID from batches; ``reference`` may be precomputed ``(mu, sigma)`` statistics."""

    def __init__(self, reference: Any = None) -> None:
        self.real = FeatureStats()
        self.fake = FeatureStats()
        self._reference = None if reference is None else _stats_tuple(reference, "reference")

    def update(self, features: Any, real: bool = False) -> StreamingFID:
        if real and self._reference is not None:
            raise DataError("StreamingFID: reference statistics were given; "
                            "do not add real batches")
        (self.real if real else self.fake).update(features, "real features" if real else
                                                   "fake features")
        return self

    def compute(self) -> float:
        ref = self._reference if self._reference is not None else self.real.compute()
        return frechet_distance(*ref, *self.fake.compute())


class StreamingIntraFID:
    """Per-class FID from labelled batches; ``reference`` maps class -> (mu, sigma)."""

    def __init__(self, reference: dict[int, Any] | None = None) -> None:
        self.real: dict[int, FeatureStats] = {}
        self.fake: dict[int, FeatureStats] = {}
        self._reference = None if reference is None else {
            int(c): _stats_tuple(s, f"reference class {c}") for c, s in reference.items()
        }

    def update(self, features: Any, labels: Any, real: bool = False) -> StreamingIntraFID:
        name = "real features" if real else "fake features"
        x = as_features(features, name, min_rows=0)
        y = as_labels(labels, x.shape[0], "real labels" if real else "fake labels")
        if real and self._reference is not None:
            raise DataError("StreamingIntraFID: reference statistics were given; "
                            "do not add real batches")
        store = self.real if real else self.fake
        for c in np.unique(y).tolist():
            store.setdefault(int(c), FeatureStats()).update(x[y == c], name)
        return self

    def compute(self) -> dict[str, Any]:
        ref = self._reference if self._reference is not None else {
            c: s.compute() for c, s in self.real.items() if s.n >= 2
        }
        classes = sorted(self._reference if self._reference is not None else self.real)
        if not classes:
            raise DataError("intra-FID: no real classes seen")
        per_class: dict[int, float] = {}
        for c in classes:
            n_fake = self.fake[c].n if c in self.fake else 0
            if c not in ref or n_fake < 2:
                n_real = "reference" if c in ref else (self.real[c].n if c in self.real else 0)
                raise DataError(
                    f"intra-FID: class {c} has {n_real} real and {n_fake} fake samples; "
                    "each class needs at least 2 of both"
                )
            per_class[c] = frechet_distance(*ref[c], *self.fake[c].compute())
        return {"mean": float(np.mean(list(per_class.values()))), "per_class": per_class}


class _Buffered:
    """Holds real and fake feature batches for metrics that need the samples themselves."""

    def __init__(self, reference: Any = None) -> None:
        self._real: list[np.ndarray] = []
        self._fake: list[np.ndarray] = []
        self._dim: int | None = None
        if reference is not None:
            self.update(reference, real=True)

    def update(self, features: Any, real: bool = False):
        name = "real features" if real else "fake features"
        x = as_features(features, name, min_rows=0)
        if self._dim is not None and x.shape[1] != self._dim:
            raise DataError(
                f"feature dimensions differ: {name} have {x.shape[1]}, earlier batches had "
                f"{self._dim}"
            )
        self._dim = x.shape[1]
        (self._real if real else self._fake).append(x)
        return self

    def _arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if not self._real or not self._fake:
            raise DataError(f"{type(self).__name__}: add both real and fake features first")
        return np.concatenate(self._real), np.concatenate(self._fake)


class StreamingKID(_Buffered):
    """KID from batches (the samples are kept: subsets are drawn from the whole set)."""

    def __init__(self, reference: Any = None, subsets: int = 100, subset_size: int = 1000,
                 seed: int = 0) -> None:
        super().__init__(reference)
        self.subsets, self.subset_size, self.seed = subsets, subset_size, seed

    def compute(self) -> MeanStd:
        real, fake = self._arrays()
        return kid(real, fake, self.subsets, self.subset_size, self.seed)


class StreamingPRDC(_Buffered):
    """Precision, recall, density and coverage from batches."""

    def __init__(self, reference: Any = None, k: int = 5) -> None:
        super().__init__(reference)
        self.k = k

    def compute(self) -> dict[str, float]:
        real, fake = self._arrays()
        return prdc(real, fake, k=self.k)


class StreamingIS:
    """Inception Score from batches of class probabilities."""

    def __init__(self, splits: int = 10, seed: int = 0) -> None:
        self.splits, self.seed = splits, seed
        self._probs: list[np.ndarray] = []

    def update(self, probs: Any) -> StreamingIS:
        self._probs.append(as_features(probs, "class probabilities", min_rows=0))
        return self

    def compute(self) -> MeanStd:
        if not self._probs:
            raise DataError("StreamingIS: no probabilities added")
        return inception_score(np.concatenate(self._probs), self.splits, self.seed)
