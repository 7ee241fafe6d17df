"""Few-shot split files: which training images a (source, shots, seed) run may use.

A split draws K training and n_val validation images per class from the source's *train* split
(given as its label array); the test split is never touched. Its JSON bytes are deterministic, so
the same (labels, K, seed) gives a byte-identical file, and each result stores the file's sha256.

Sampling: class c's images are permuted by a generator seeded with (seed, c); the first K of the
permutation are training images and the last n_val are validation images. So for one seed the
training sets are nested across K (the 1-shot images are among the 2-shot ones), the validation
sets are nested across n_val, and one class's draw never depends on another class's size.

``shots="all"``: every train image except a validation draw of ⌈10%⌉ of each class (at least 1),
unless ``n_val`` is given. Default ``n_val`` for K shots is min(K, 4).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fmlab.errors import DataError
from fmlab.utils.io import atomic_write

FORMAT = "fmlab.fewshot_split"
VERSION = 1
ALL_VAL_FRACTION = 0.1


def _labels_sha256(labels: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(labels, dtype="<i8").tobytes()).hexdigest()


@dataclass(frozen=True)
class FewShotSplit:
    """Train and validation indices into a source's train split, with what they were drawn from."""

    shots: int | str
    seed: int
    n_val_per_class: int | None  # None for shots="all" with the default fractional val draw
    n_classes: int
    n_labels: int
    labels_sha256: str
    train: np.ndarray
    val: np.ndarray
    class_names: tuple[str, ...] | None = None

    def to_json_bytes(self) -> bytes:
        """The canonical file content: fixed key order, compact, one trailing newline."""
        obj = {
            "format": FORMAT,
            "version": VERSION,
            "shots": self.shots,
            "seed": self.seed,
            "n_val_per_class": self.n_val_per_class,
            "n_classes": self.n_classes,
            "class_names": list(self.class_names) if self.class_names is not None else None,
            "n_labels": self.n_labels,
            "labels_sha256": self.labels_sha256,
            "train": self.train.tolist(),
            "val": self.val.tolist(),
        }
        return (json.dumps(obj, separators=(",", ":")) + "\n").encode()

    @property
    def sha256(self) -> str:
        """sha256 of the file bytes :meth:`save` writes."""
        return hashlib.sha256(self.to_json_bytes()).hexdigest()

    def save(self, path: str | os.PathLike) -> str:
        """Write the split atomically; returns the sha256 of the bytes written."""
        data = self.to_json_bytes()
        with atomic_write(path, "wb") as f:
            f.write(data)
        return hashlib.sha256(data).hexdigest()

    def check_labels(self, labels: np.ndarray, where: str = "split") -> None:
        """Raise DataError unless ``labels`` are the ones this split was drawn from."""
        labels = np.asarray(labels)
        if len(labels) != self.n_labels or _labels_sha256(labels) != self.labels_sha256:
            raise DataError(f"{where} was drawn from a different label array "
                            f"({self.n_labels} labels, sha256 {self.labels_sha256[:12]}…) than "
                            f"the one given ({len(labels)} labels)")


def default_n_val(shots: int | str) -> int | None:
    return None if shots == "all" else min(int(shots), 4)


def make_split(labels: Sequence[int] | np.ndarray, shots: int | str, seed: int,
               n_val: int | None = None, class_names: Sequence[str] | None = None,
               n_classes: int | None = None) -> FewShotSplit:
    """Draw ``shots`` training and ``n_val`` validation images per class (see module doc).

    The classes are 0..n_classes−1 with ``n_classes`` = len(class_names), else the given value,
    else max(label)+1; a class with no image, or with fewer than shots + n_val, is an error that
    names it.
    """
    lab = np.asarray(labels)
    if lab.ndim != 1 or lab.size == 0:
        raise DataError(f"labels must be a non-empty 1-D array, got shape {lab.shape}")
    if lab.dtype.kind not in "iu":
        raise DataError(f"labels must be integers, got dtype {lab.dtype}")
    lab = lab.astype(np.int64)
    if lab.min() < 0:
        raise DataError(f"labels must be >= 0, found {int(lab.min())}")
    if shots != "all" and (isinstance(shots, (bool, str)) or int(shots) != shots
                           or int(shots) < 1):
        raise DataError(f"shots must be a positive integer or 'all', got {shots!r}")
    shots = shots if shots == "all" else int(shots)
    if n_val is not None and (int(n_val) != n_val or n_val < 0):
        raise DataError(f"n_val must be a non-negative integer, got {n_val!r}")
    names = tuple(str(c) for c in class_names) if class_names is not None else None
    n_cls = len(names) if names is not None else (
        int(n_classes) if n_classes is not None else int(lab.max()) + 1)
    if lab.max() >= n_cls:
        raise DataError(f"label {int(lab.max())} is out of range for {n_cls} classes")
    nv_fixed = default_n_val(shots) if n_val is None else int(n_val)

    def cname(c: int) -> str:
        return f"{c} ({names[c]!r})" if names is not None else str(c)

    counts = np.bincount(lab, minlength=n_cls)
    train, val = [], []
    for c in range(n_cls):
        if counts[c] == 0:
            raise DataError(f"class {cname(c)} has no images in the train split")
        nv = nv_fixed if nv_fixed is not None else max(1, math.ceil(ALL_VAL_FRACTION * counts[c]))
        k = counts[c] - nv if shots == "all" else shots
        if k < 1 or k + nv > counts[c]:
            raise DataError(f"class {cname(c)} has {counts[c]} train images; {shots} shots + "
                            f"{nv} validation images need {max(k, 1) + nv}")
        idx = np.flatnonzero(lab == c)
        perm = idx[np.random.default_rng([int(seed), c]).permutation(len(idx))]
        train.append(perm[:k])
        if nv:
            val.append(perm[len(perm) - nv:])
    return FewShotSplit(
        shots=shots, seed=int(seed), n_val_per_class=nv_fixed, n_classes=n_cls,
        n_labels=len(lab), labels_sha256=_labels_sha256(lab),
        train=np.sort(np.concatenate(train)).astype(np.int64),
        val=np.sort(np.concatenate(val)).astype(np.int64) if val else np.zeros(0, np.int64),
        class_names=names)


def load_split(path: str | os.PathLike, labels: np.ndarray | None = None) -> FewShotSplit:
    """Read and validate a split file; with ``labels``, also check it was drawn from them."""
    p = Path(path)
    try:
        obj = json.loads(p.read_bytes())
    except FileNotFoundError:
        raise DataError(f"split file {p} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"split file {p} is not valid JSON: {e}") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise DataError(f"split file {p} is not an fmlab few-shot split (format {FORMAT!r})")
    if obj.get("version") != VERSION:
        raise DataError(f"split file {p} has version {obj.get('version')!r}; this fmlab reads "
                        f"version {VERSION}")
    required = ("shots", "seed", "n_val_per_class", "n_classes", "class_names", "n_labels",
                "labels_sha256", "train", "val")
    missing = [k for k in required if k not in obj]
    if missing:
        raise DataError(f"split file {p} lacks the key(s) {', '.join(missing)}")
    n = obj["n_labels"]
    if not isinstance(n, int) or n < 1:
        raise DataError(f"split file {p}: n_labels must be a positive integer, got {n!r}")
    arrays = {}
    for key in ("train", "val"):
        v = obj[key]
        if not isinstance(v, list) or not all(isinstance(i, int) and not isinstance(i, bool)
                                              for i in v):
            raise DataError(f"split file {p}: {key!r} must be a list of integer indices")
        a = np.asarray(v, dtype=np.int64)
        if a.size and (a.min() < 0 or a.max() >= n):
            bad = int(a[(a < 0) | (a >= n)][0])
            raise DataError(f"split file {p}: {key!r} index {bad} is out of range for "
                            f"{n} labels")
        if len(np.unique(a)) != len(a):
            raise DataError(f"split file {p}: {key!r} has repeated indices")
        arrays[key] = a
    if np.intersect1d(arrays["train"], arrays["val"]).size:
        raise DataError(f"split file {p}: train and val indices overlap")
    names = obj["class_names"]
    split = FewShotSplit(
        shots=obj["shots"], seed=obj["seed"], n_val_per_class=obj["n_val_per_class"],
        n_classes=obj["n_classes"], n_labels=n, labels_sha256=obj["labels_sha256"],
        train=arrays["train"], val=arrays["val"],
        class_names=tuple(names) if names is not None else None)
    if labels is not None:
        split.check_labels(labels, f"split file {p}")
    return split
