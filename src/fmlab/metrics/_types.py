"""Small result types shared by the metrics."""

from __future__ import annotations

from typing import NamedTuple


class MeanStd(NamedTuple):
    """A metric estimated over several subsets or splits: their mean and (population) std.

    A tuple, so ``mean, std = kid(...)`` works; ``._asdict()`` gives a JSON-ready dict.

    Examples:
        >>> m = MeanStd(0.5, 0.1)
        >>> mean, std = m
        >>> m._asdict()
        {'mean': 0.5, 'std': 0.1}
    """

    mean: float
    std: float
