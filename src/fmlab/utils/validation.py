"""One set of value checks for every package (scikit-learn keeps its own in ``utils/validation``).

Each check raises :class:`~fmlab.errors.ConfigError` with the key and the offending value, so
the CLI prints one line and exits 2. Checks refuse NaN and infinity wherever a number is asked
for: a ``nan`` hyperparameter otherwise flows through training and yields NaN weights that are
written as if they were a result (reliability probe F1).
"""

from __future__ import annotations

import math
from typing import Any

from fmlab.errors import ConfigError


def check(ok: bool, key: str, value: Any, why: str) -> None:
    """Raise ``ConfigError("key: value why")`` unless ``ok``.

    Args:
        ok: the condition that must hold.
        key: the dotted config key or CLI flag the value came from.
        value: the offending value (printed with ``repr``).
        why: what the value should be, e.g. ``"must be >= 1"``.

    Examples:
        >>> check(3 > 0, "trainer.batch_size", 3, "must be >= 1")
        >>> check(0 > 0, "trainer.batch_size", 0, "must be >= 1")
        Traceback (most recent call last):
        ...
        fmlab.errors.ConfigError: trainer.batch_size: 0 must be >= 1
    """
    if not ok:
        raise ConfigError(f"{key}: {value!r} {why}")


def positive_int(key: str, value: Any) -> int:
    """``value`` as an ``int`` >= 1 (booleans and floats with a fraction are refused).

    Examples:
        >>> positive_int("--batch-size", 8)
        8
        >>> positive_int("--batch-size", 0)
        Traceback (most recent call last):
        ...
        fmlab.errors.ConfigError: --batch-size: 0 must be an integer >= 1
    """
    return int_at_least(key, value, 1)


def non_negative_int(key: str, value: Any) -> int:
    """``value`` as an ``int`` >= 0.

    Examples:
        >>> non_negative_int("--seed", 0)
        0
    """
    return int_at_least(key, value, 0)


def int_at_least(key: str, value: Any, low: int) -> int:
    """``value`` as an ``int`` >= ``low``; refuses bools, non-integral floats and strings.

    Examples:
        >>> int_at_least("--views", 2, 1)
        2
    """
    ok = isinstance(value, int) and not isinstance(value, bool)
    if not ok and isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value, ok = int(value), True
    check(ok and value >= low, key, value, f"must be an integer >= {low}")
    return int(value)


def finite_float(key: str, value: Any, *, low: float | None = None, high: float | None = None,
                 low_open: bool = False) -> float:
    """``value`` as a finite ``float`` within ``[low, high]`` (``(low, high]`` with ``low_open``).

    Examples:
        >>> finite_float("--gamma", 0.5, low=0.0)
        0.5
        >>> finite_float("--gamma", float("nan"))
        Traceback (most recent call last):
        ...
        fmlab.errors.ConfigError: --gamma: nan must be a finite number
    """
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}: {value!r} must be a number") from None
    check(math.isfinite(x), key, value, "must be a finite number")
    if low is not None:
        if low_open:
            check(x > low, key, value, f"must be > {low}")
        else:
            check(x >= low, key, value, f"must be >= {low}")
    if high is not None:
        check(x <= high, key, value, f"must be <= {high}")
    return x
