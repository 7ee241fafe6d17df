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
from fmlab.metrics._checks import as_features, as_labels, foreign_labels_hint
from fmlab.metrics._types import MeanStd
from fmlab.metrics.classifier_score import inception_score
from fmlab.metrics.frechet import frechet_distance
from fmlab.metrics.kernel_distance import kid
from fmlab.metrics.neighbours import prdc


class FeatureStats:
    """Running float64 mean and covariance of features seen in batches.

    Batches are merged with Chan et al.'s pairwise update, so the result equals
    :func:`~fmlab.metrics.feature_statistics` of all rows at once (to round-off) while holding
    only D + D^2 numbers; :meth:`merge` folds in an accumulator from another worker.

    Examples:
        >>> import numpy as np
        >>> x = np.random.default_rng(0).normal(size=(100, 3))
        >>> stats = FeatureStats().update(x[:30]).update(x[30:])
        >>> mu, sigma = stats.compute()
        >>> np.allclose(sigma, np.cov(x, rowvar=False)), stats.n, stats.dim
        (True, 100, 3)
    """

    def __init__(self) -> None:
        self.n = 0
        self.mean: np.ndarray | None = None
        self._m2: np.ndarray | None = None  # sum of outer products of centred features

    @property
    def dim(self) -> int | None:
        """Feature dimension, or None before the first non-empty batch."""
        return None if self.mean is None else int(self.mean.shape[0])

    def update(self, features: Any, name: str = "features") -> FeatureStats:
        """Add a batch.

        Args:
            features: (B, D) batch; B may be 0.
            name: how the batch is called in error messages.

        Returns:
            self, so calls chain.
        """
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
        """Fold another accumulator into this one (e.g. from another worker).

        Args:
            other: an accumulator of the same feature dimension.

        Returns:
            self, now holding the statistics of both.
        """
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
        """The statistics so far.

        Returns:
            ``(mean, unbiased covariance)``; at least two samples are needed.
        """
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
    """FID from batches of features, without holding the features.

    Args:
        reference: precomputed real statistics, ``(mu, sigma)``, a
            :class:`~fmlab.metrics.ReferenceStats` or a :class:`FeatureStats`; then only fake
            batches are added. Default: add real batches with ``update(x, real=True)``.

    Examples:
        The streamed value is the one-shot :func:`~fmlab.metrics.fid`:

        >>> import numpy as np
        >>> from fmlab.metrics import fid
        >>> rng = np.random.default_rng(0)
        >>> real, fake = rng.normal(size=(100, 3)), rng.normal(loc=0.5, size=(100, 3))
        >>> m = StreamingFID().update(real, real=True)
        >>> for batch in np.array_split(fake, 4):
        ...     _ = m.update(batch)
        >>> abs(m.compute() - fid(real, fake)) < 1e-9
        True
    """

    def __init__(self, reference: Any = None) -> None:
        self.real = FeatureStats()
        self.fake = FeatureStats()
        self._reference = None if reference is None else _stats_tuple(reference, "reference")

    def update(self, features: Any, real: bool = False) -> StreamingFID:
        """Add a (B, D) batch of fake features, or of real ones with ``real=True``; returns self."""
        if real and self._reference is not None:
            raise DataError("StreamingFID: reference statistics were given; "
                            "do not add real batches")
        (self.real if real else self.fake).update(features, "real features" if real else
                                                   "fake features")
        return self

    def compute(self) -> float:
        """The FID of everything added so far (each side needs two or more samples)."""
        ref = self._reference if self._reference is not None else self.real.compute()
        return frechet_distance(*ref, *self.fake.compute())


class StreamingIntraFID:
    """Per-class FID (intra-FID) from labelled batches.

    Args:
        reference: optional ``{class: (mu, sigma)}`` real statistics per class; default: add
            real batches with ``update(x, y, real=True)``.

    Examples:
        >>> import numpy as np
        >>> from fmlab.metrics import intra_fid
        >>> rng = np.random.default_rng(0)
        >>> real, fake = rng.normal(size=(100, 3)), rng.normal(loc=0.5, size=(100, 3))
        >>> y = np.arange(100) % 2
        >>> m = StreamingIntraFID().update(real, y, real=True).update(fake, y)
        >>> abs(m.compute()["mean"] - intra_fid(real, y, fake, y)["mean"]) < 1e-9
        True
    """

    def __init__(self, reference: dict[int, Any] | None = None) -> None:
        self.real: dict[int, FeatureStats] = {}
        self.fake: dict[int, FeatureStats] = {}
        self._reference = None if reference is None else {
            int(c): _stats_tuple(s, f"reference class {c}") for c, s in reference.items()
        }

    def update(self, features: Any, labels: Any, real: bool = False) -> StreamingIntraFID:
        """Add a (B, D) batch with its (B,) integer labels (real ones with ``real=True``)."""
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
        """``{"mean": float, "per_class": {class: fid}}`` over the real (or reference) classes."""
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
                    + foreign_labels_hint(np.repeat(list(self.fake), [s.n for s in self.fake.values()]),
                                          classes)
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
        """Add a (B, D) batch of fake features, or of real ones with ``real=True``; returns self."""
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
    """KID from batches (the samples are kept: subsets are drawn from the whole set).

    Args:
        reference: optional (N, D) real features, added as the real side.
        subsets: number of random subsets, as in :func:`~fmlab.metrics.kid`.
        subset_size: samples per subset and side.
        seed: seed of the subset draws.

    Examples:
        >>> import numpy as np
        >>> from fmlab.metrics import kid
        >>> rng = np.random.default_rng(0)
        >>> real, fake = rng.normal(size=(60, 3)), rng.normal(size=(60, 3))
        >>> m = StreamingKID(real, subsets=5, subset_size=20)
        >>> m.update(fake[:30]).update(fake[30:]).compute() == kid(real, fake, 5, 20)
        True
    """

    def __init__(self, reference: Any = None, subsets: int = 100, subset_size: int = 1000,
                 seed: int = 0) -> None:
        super().__init__(reference)
        self.subsets, self.subset_size, self.seed = subsets, subset_size, seed

    def compute(self) -> MeanStd:
        """KID ``(mean, std)`` of all samples added so far."""
        real, fake = self._arrays()
        return kid(real, fake, self.subsets, self.subset_size, self.seed)


class StreamingPRDC(_Buffered):
    """Precision, recall, density and coverage from batches (the samples are kept).

    Args:
        reference: optional (N, D) real features, added as the real side.
        k: neighbour for the ball radii, as in :func:`~fmlab.metrics.prdc`.

    Examples:
        >>> import numpy as np
        >>> real = np.random.default_rng(0).normal(size=(40, 2))
        >>> StreamingPRDC(k=3).update(real, real=True).update(real).compute()["coverage"]
        1.0
    """

    def __init__(self, reference: Any = None, k: int = 5) -> None:
        super().__init__(reference)
        self.k = k

    def compute(self) -> dict[str, float]:
        """``{"precision", "recall", "density", "coverage"}`` of all samples added so far."""
        real, fake = self._arrays()
        return prdc(real, fake, k=self.k)


class StreamingIS:
    """Inception Score from batches of class probabilities.

    Args:
        splits: number of splits, as in :func:`~fmlab.metrics.inception_score`.
        seed: seed of the shuffle before splitting.

    Examples:
        >>> import numpy as np
        >>> onehot = np.eye(4)[np.arange(40) % 4]
        >>> m = StreamingIS(splits=1).update(onehot[:25]).update(onehot[25:])
        >>> round(m.compute().mean, 6)
        4.0
    """

    def __init__(self, splits: int = 10, seed: int = 0) -> None:
        self.splits, self.seed = splits, seed
        self._probs: list[np.ndarray] = []

    def update(self, probs: Any) -> StreamingIS:
        """Add a (B, C) batch of class probabilities; returns self."""
        self._probs.append(as_features(probs, "class probabilities", min_rows=0))
        return self

    def compute(self) -> MeanStd:
        """IS ``(mean, std)`` of all probabilities added so far."""
        if not self._probs:
            raise DataError("StreamingIS: no probabilities added")
        return inception_score(np.concatenate(self._probs), self.splits, self.seed)
