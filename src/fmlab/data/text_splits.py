"""Seeded splits of text corpora that ship as one file, and the validation draw from train.

Why a split *file*: ``medabs``, ``shakespeare``, ``text:PATH`` and ``jsonl:PATH`` come as one file
with no official test split, so fmlab draws one. The draw is a pure function of (the file's
sha256, the unit count, the seed, the test fraction), written as canonical JSON bytes whose sha256
every result records — the same role the few-shot split files of :mod:`fmlab.adapt.splits` play
for image sources. The *split* seed is a property of the data (default 0) and is not the run
seed: fine-tuning seeds 1, 2, 3 all score on the same test records.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fmlab.errors import DataError
from fmlab.utils.io import atomic_write

FORMAT = "fmlab.text_split"
VERSION = 1


@dataclass(frozen=True)
class TextSplitFile:
    """Train/test unit indices of a one-file corpus (units: records, or blocks of paragraphs).

    Attributes:
        source: the source spec the split belongs to.
        file_sha256: sha256 of the corpus file the units were read from.
        n_units: how many units the file has (after de-duplication).
        seed: the split seed.
        test_fraction: the share of units (per class when ``stratified``) drawn for test.
        stratified: whether the draw was made per label.
        train, test: sorted unit indices; disjoint, together all units.
    """

    source: str
    file_sha256: str
    n_units: int
    seed: int
    test_fraction: float
    stratified: bool
    train: np.ndarray
    test: np.ndarray

    def to_json_bytes(self) -> bytes:
        """The canonical file content (fixed key order, compact, one trailing newline)."""
        obj = {"format": FORMAT, "version": VERSION, "source": self.source,
               "file_sha256": self.file_sha256, "n_units": self.n_units, "seed": self.seed,
               "test_fraction": self.test_fraction, "stratified": self.stratified,
               "train": self.train.tolist(), "test": self.test.tolist()}
        return (json.dumps(obj, separators=(",", ":")) + "\n").encode()

    @property
    def sha256(self) -> str:
        """sha256 of the bytes :meth:`save` writes."""
        return hashlib.sha256(self.to_json_bytes()).hexdigest()

    def save(self, path: str | os.PathLike) -> str:
        """Write the split file atomically; returns its sha256."""
        data = self.to_json_bytes()
        with atomic_write(path, "wb") as f:
            f.write(data)
        return hashlib.sha256(data).hexdigest()

    def indices(self, split: str) -> np.ndarray:
        """Unit indices of ``"train"``, ``"test"`` or ``"all"``."""
        if split == "all":
            return np.arange(self.n_units)
        if split not in ("train", "test"):
            raise DataError(f"{self.source}: no split {split!r}; it has train, test, all")
        return self.train if split == "train" else self.test


def draw_split(source: str, file_sha256: str, n_units: int, seed: int = 0,
               test_fraction: float = 0.2, labels: Sequence[int] | None = None) -> TextSplitFile:
    """Draw a seeded train/test split of ``n_units`` units (stratified when ``labels`` given).

    Each class (or the whole set) is permuted by ``default_rng([seed, class])``; the first
    ``round(test_fraction * n_c)`` units go to test (none when the class has a single unit).

    Args:
        source: the source spec (recorded in the file).
        file_sha256: sha256 of the corpus file.
        n_units: number of units.
        seed: the split seed.
        test_fraction: share of each class drawn for test, in (0, 1).
        labels: one label per unit, or None for an unstratified draw.

    Returns:
        The split.

    Examples:
        >>> s = draw_split("x", "0" * 64, 10, seed=0, test_fraction=0.2)
        >>> len(s.train), len(s.test), sorted(set(s.train) | set(s.test)) == list(range(10))
        (8, 2, True)
    """
    if n_units < 2:
        raise DataError(f"{source}: {n_units} record(s) cannot be split into train and test")
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"{source}: test fraction {test_fraction} must be in (0, 1)")
    lab = np.zeros(n_units, np.int64) if labels is None else np.asarray(labels, np.int64)
    test = []
    for c in np.unique(lab):
        idx = np.flatnonzero(lab == c)
        k = round(test_fraction * len(idx)) if len(idx) > 1 else 0
        test.append(idx[np.random.default_rng([int(seed), int(c)]).permutation(len(idx))][:k])
    te = np.sort(np.concatenate(test)).astype(np.int64)
    tr = np.setdiff1d(np.arange(n_units), te).astype(np.int64)
    return TextSplitFile(source, file_sha256, n_units, int(seed), float(test_fraction),
                         labels is not None, tr, te)


def validation_split(n: int, fraction: float, seed: int,
                     labels: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (train_idx, val_idx) of ``n`` training records; validation comes from train only.

    With ``labels`` the draw is per class (``ceil(fraction * n_c)`` of each class with at least
    two records, so every class keeps a training example); without, ``ceil(fraction * n)`` overall.
    Why not :func:`fmlab.adapt.splits.make_split`: it refuses a class with a single record, and
    ``--fraction`` subsets of ChemProt leave rare classes with one or none.

    Args:
        n: number of training records.
        fraction: share drawn for validation, in (0, 1).
        seed: the run seed.
        labels: per-record labels for a stratified draw.

    Returns:
        Sorted disjoint index arrays covering ``range(n)``.

    Examples:
        >>> tr, va = validation_split(10, 0.1, seed=1, labels=[0] * 5 + [1] * 5)
        >>> len(tr), len(va), sorted(set(tr) | set(va)) == list(range(10))
        (8, 2, True)
    """
    if n < 2:
        raise DataError(f"validation split: {n} training record(s) are too few to hold out any")
    if not 0.0 < fraction < 1.0:
        raise DataError(f"validation fraction {fraction} must be in (0, 1)")
    lab = np.zeros(n, np.int64) if labels is None else np.asarray(labels, np.int64)
    val = []
    for c in np.unique(lab):
        idx = np.flatnonzero(lab == c)
        if len(idx) < 2:
            continue
        k = min(len(idx) - 1, math.ceil(fraction * len(idx)))
        val.append(idx[np.random.default_rng([int(seed), 11, int(c)]).permutation(len(idx))][:k])
    va = np.sort(np.concatenate(val)).astype(np.int64) if val else np.zeros(0, np.int64)
    if not len(va):
        raise DataError(f"validation split: no class of the {n} training records has two "
                        "records to hold one out")
    return np.setdiff1d(np.arange(n), va).astype(np.int64), va


def subset_indices(n: int, limit: int | None, seed: int) -> np.ndarray:
    """``limit`` records of ``n`` drawn with ``default_rng(seed)``, kept in file order (all for None).

    Why seeded and not the first ``limit``: several files are sorted (by class, by abstract).

    Examples:
        >>> subset_indices(5, None, 0).tolist(), len(subset_indices(5, 3, 0))
        ([0, 1, 2, 3, 4], 3)
    """
    if limit is None or limit >= n:
        return np.arange(n)
    if limit < 1:
        raise DataError(f"data.limit: {limit} must be >= 1")
    return np.sort(np.random.default_rng([int(seed), 5]).permutation(n)[:limit])
