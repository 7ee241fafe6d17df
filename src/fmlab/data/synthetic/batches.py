"""A synthetic split as the engine's training source: batches are rendered on demand.

The engine asks a source for ``len`` and ``get_batch(indices)``; a :class:`SyntheticSplit` renders
any index in microseconds, so nothing is stored: :class:`RenderedSource` renders the indices and
maps the generator's dict to the batch an objective reads (``to_batch``). ``limit`` keeps the
first M samples (``data.limit``), so a smoke run and a few-shot run use the same code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from fmlab.utils.validation import non_negative_int


def tensor_batch(rendered: dict) -> dict[str, Any]:
    """The default batch: every numpy array of a render as a tensor, other values as they are.

    Args:
        rendered: a generator's dict (``images``, ``boxes``, ``captions`` ...).

    Returns:
        The same keys; arrays become tensors (integers as int64, uint8 images stay uint8).

    Examples:
        >>> b = tensor_batch({"images": np.zeros((2, 4, 4), np.uint8), "label": np.array([1, 2]),
        ...                   "captions": ["a 1", "a 2"]})
        >>> b["images"].dtype, b["label"].dtype, b["captions"]
        (torch.uint8, torch.int64, ['a 1', 'a 2'])
    """
    out: dict[str, Any] = {}
    for key, value in rendered.items():
        if isinstance(value, np.ndarray):
            if value.dtype.kind in "iu" and value.dtype != np.uint8:
                value = value.astype(np.int64)
            out[key] = torch.as_tensor(value)
        else:
            out[key] = value
    return out


class RenderedSource:
    """``len`` and ``get_batch(indices)`` over a synthetic split (the engine's ``TrainSource``).

    Args:
        split: a :class:`~fmlab.data.synthetic.SyntheticSplit` (anything with ``render`` and ``len``).
        to_batch: maps the rendered dict to the objective's batch (default :func:`tensor_batch`).
        limit: keep only the first ``limit`` samples (0: all).

    Examples:
        >>> from fmlab.data.synthetic import open_synthetic
        >>> sp = open_synthetic("canvas?objects=cifar10_demo&size=32&n_train=8&n_test=2").split("train")
        >>> src = RenderedSource(sp, limit=5)
        >>> len(src), tuple(src.get_batch(np.array([0, 4]))["images"].shape)
        (5, (2, 32, 32, 3))
    """

    def __init__(self, split: Any, to_batch: Callable[[dict], dict] | None = None, limit: int = 0) -> None:
        limit = non_negative_int("data.limit", limit)
        self.split = split
        self.to_batch = to_batch or tensor_batch
        self.n = min(limit, len(split)) if limit else len(split)

    @property
    def labels(self) -> np.ndarray | None:
        """The kept samples' labels (the split's, when it has them)."""
        labels = getattr(self.split, "labels", None)
        return None if labels is None else np.asarray(labels)[: self.n]

    def __len__(self) -> int:
        return self.n

    def get_batch(self, indices: np.ndarray) -> dict[str, Any]:
        """Render ``indices`` (all below ``len``) and map them to a batch."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= self.n):
            from fmlab.errors import DataError

            raise DataError(f"{getattr(self.split, 'origin', 'source')}: index out of range of {self.n} samples")
        return self.to_batch(self.split.render(idx))

    def render_all(self, batch_size: int = 512) -> dict[str, Any]:
        """Every kept sample as one batch (evaluation sets), rendered in chunks.

        Args:
            batch_size: samples per render call.

        Returns:
            The batch of all ``len`` samples: tensors concatenated, lists joined.
        """
        parts = [self.get_batch(np.arange(s, min(s + batch_size, self.n))) for s in range(0, self.n, batch_size)]
        out: dict[str, Any] = {}
        for key in parts[0] if parts else ():
            vals = [p[key] for p in parts]
            out[key] = torch.cat(vals) if isinstance(vals[0], torch.Tensor) else sum((list(v) for v in vals), [])
        return out
