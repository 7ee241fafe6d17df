"""Input checks shared by every metric.

Metrics are usually the last step of a long run; a NaN feature or a swapped argument should stop
them with a message that says what is wrong, not produce a quiet ``nan`` in a results table.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fmlab.errors import DataError


def to_numpy(x: Any) -> np.ndarray:
    """A numpy view of an array-like or a (CPU or GPU) torch tensor, without importing torch."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def as_features(x: Any, name: str, min_rows: int = 1) -> np.ndarray:
    """Return ``x`` as a finite float64 (N, D) array with N >= ``min_rows``.

    Args:
        x: array-like or torch tensor.
        name: how the argument is called in the error message ("real features", ...).
        min_rows: the fewest rows the metric can work with.

    Returns:
        A float64 numpy array.

    Raises:
        DataError: not numeric, not 2-D, too few rows, D = 0, or a NaN/inf value.

    Examples:
        >>> as_features([[1, 2], [3, 4]], "real features").dtype
        dtype('float64')
        >>> as_features([[1.0, float("nan")]], "fake features")
        Traceback (most recent call last):
        ...
        fmlab.errors.DataError: fake features: 1 non-finite value(s) (NaN first at row 0); ...
    """
    arr = to_numpy(x)
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.bool_)
    ):
        raise DataError(f"{name}: expected a numeric array, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise DataError(f"{name}: expected a 2-D (samples, features) array, got shape {arr.shape}")
    if arr.shape[0] < min_rows:
        raise DataError(f"{name}: need at least {min_rows} samples, got {arr.shape[0]}")
    if arr.shape[1] < 1:
        raise DataError(f"{name}: feature dimension is 0 (shape {arr.shape})")
    arr = np.asarray(arr, dtype=np.float64)
    check_finite(arr, name)
    return arr


def check_finite(arr: np.ndarray, name: str) -> None:
    """Raise a DataError naming the first row that holds a NaN or an infinity."""
    finite = np.isfinite(arr)
    if not finite.all():
        bad = np.argwhere(~finite)
        kind = "NaN" if np.isnan(arr[tuple(bad[0])]) else "infinite"
        where = f"row {bad[0][0]}" if arr.ndim == 2 else f"index {tuple(bad[0])}"
        raise DataError(
            f"{name}: {len(bad)} non-finite value(s) ({kind} first at {where}); "
            "check the generator output and the feature extractor"
        )


def check_same_dim(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    """Both sides of a two-sample metric must live in the same feature space."""
    if a.shape[-1] != b.shape[-1]:
        raise DataError(
            f"feature dimensions differ: {name_a} has {a.shape[-1]}, {name_b} has {b.shape[-1]} "
            "(were they made by the same extractor?)"
        )


def as_labels(y: Any, n: int, name: str) -> np.ndarray:
    """Integer class labels, one per sample."""
    arr = to_numpy(y)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise DataError(f"{name}: expected {n} labels in a 1-D array, got shape {arr.shape}")
    if (arr.size and not np.issubdtype(arr.dtype, np.integer)
            and not np.all(np.equal(np.mod(arr, 1), 0))):
        raise DataError(f"{name}: labels must be integers, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def foreign_labels_hint(labels: Any, classes: Any, name: str = "fake labels") -> str:
    """Say which ``labels`` are not among ``classes`` (empty when all are), for an error message.

    A class with no fake samples is usually a labelling mistake (labels off by one, or out of
    range altogether), not a generator that skipped a class; naming the foreign labels says so.

    Examples:
        >>> foreign_labels_hint([42, 42, 3], range(10))
        '; fake labels 42 (2 samples) are not classes of the reference (0..9)'
        >>> foreign_labels_hint([1, 2], range(10))
        ''
    """
    arr = np.asarray(labels).reshape(-1)
    known = np.unique(np.asarray(list(classes), dtype=np.int64))
    foreign, counts = np.unique(arr[~np.isin(arr, known)], return_counts=True)
    if foreign.size == 0:
        return ""
    shown = ", ".join(str(int(v)) for v in foreign[:5]) + (", ..." if foreign.size > 5 else "")
    span = f"{int(known.min())}..{int(known.max())}" if known.size else "none"
    return (f"; {name} {shown} ({int(counts.sum())} samples) are not classes of the reference "
            f"({span})")


def split_by_class(real_features: Any, real_labels: Any, fake_features: Any, fake_labels: Any,
                   classes: Any, *, metric: str, min_per_class: int, need: str
                   ) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """``[(class, real rows, fake rows)]`` for a class-wise metric (intra-FID, intra-PRDC).

    Validates both sides once: same feature space, one integer label per row, and at least
    ``min_per_class`` real and fake rows in every class (``need`` says so in the error, e.g.
    "at least 2"). ``classes`` defaults to every label of the real set.
    """
    real = as_features(real_features, "real features", min_rows=2)
    fake = as_features(fake_features, "fake features", min_rows=2)
    check_same_dim(real, fake, "real features", "fake features")
    yr = as_labels(real_labels, real.shape[0], "real labels")
    yf = as_labels(fake_labels, fake.shape[0], "fake labels")
    wanted = np.unique(yr) if classes is None else np.asarray(list(classes), dtype=np.int64)
    pairs = []
    for c in wanted.tolist():
        r, f = real[yr == c], fake[yf == c]
        if len(r) < min_per_class or len(f) < min_per_class:
            raise DataError(
                f"{metric}: class {c} has {len(r)} real and {len(f)} fake samples; "
                f"each class needs {need} of both" + foreign_labels_hint(yf, wanted)
            )
        pairs.append((int(c), r, f))
    if not pairs:
        raise DataError(f"{metric}: no classes to evaluate")
    return pairs
