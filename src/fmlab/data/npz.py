"""``npz:PATH`` sources.

Keys per split ``s``: ``x_s`` (uint8, ``(N,H,W)`` or ``(N,H,W,C)``) or encoded images
``x_s_jpeg`` (uint8 bytes) + ``x_s_jpeg_offsets`` (int64, N+1); labels ``y_s``; optional
``class_names``. When both decoded and encoded images exist, the decoded array is used.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import numpy as np

from fmlab.data.hashing import file_hash, split_hash
from fmlab.data.sources import ArraySplit, EncodedSplit, ImageSource, ImageSplit, check_labels
from fmlab.errors import DataError

_SPLIT_KEY = re.compile(r"^x_(?P<split>[A-Za-z0-9]+?)(?P<enc>_jpeg)?$")


def load_npz(path: str | Path) -> np.lib.npyio.NpzFile:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"file not found: {path}")
    try:
        return np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise DataError(f"{path}: not a readable .npz file ({e})") from None


def _get(z: np.lib.npyio.NpzFile, key: str, path: Path) -> np.ndarray:
    if key not in z.files:
        raise DataError(f"{path}: missing key {key!r} (keys: {', '.join(sorted(z.files))})")
    try:
        return z[key]
    except ValueError as e:  # object arrays need pickle, which we refuse
        raise DataError(f"{path}: key {key!r} cannot be read without pickle ({e})") from None


def open_npz_source(path: str | Path, name: str | None = None, provenance: str = "",
                    metadata: dict | None = None) -> ImageSource:
    path = Path(path).expanduser()
    z = load_npz(path)
    splits_found: dict[str, set[str]] = {}
    for k in z.files:
        m = _SPLIT_KEY.match(k)
        if m and not k.endswith("_offsets"):
            splits_found.setdefault(m["split"], set()).add("jpeg" if m["enc"] else "array")
    if not splits_found:
        raise DataError(
            f"{path}: no image keys found; expected x_train/y_train (uint8 images) or "
            f"x_train_jpeg + x_train_jpeg_offsets (keys: {', '.join(sorted(z.files))})"
        )
    class_names = None
    if "class_names" in z.files:
        class_names = [str(c) for c in _get(z, "class_names", path).tolist()]
    fsha = file_hash(path)
    labels_by_split = {s: _get(z, f"y_{s}", path) for s in splits_found}
    if class_names is None:
        top = max((int(y.max()) for y in labels_by_split.values() if y.size), default=-1)
        class_names = [str(i) for i in range(top + 1)]
    splits: dict[str, ImageSplit] = {}
    for s, kinds in sorted(splits_found.items()):
        labels = check_labels(labels_by_split[s], len(class_names), str(path), f"y_{s}")
        common = dict(name=s, labels=labels, class_names=class_names,
                      content_hash=split_hash(fsha, s), origin=str(path))
        if "array" in kinds:
            x = _get(z, f"x_{s}", path)
            if x.dtype != np.uint8:
                raise DataError(f"{path}: x_{s} must be uint8 images, got dtype {x.dtype}")
            if x.ndim not in (3, 4) or (x.ndim == 4 and x.shape[-1] not in (1, 3)):
                raise DataError(f"{path}: x_{s} must have shape (N,H,W) or (N,H,W,C) with C in 1/3, "
                                f"got {x.shape}")
            n = x.shape[0]
            split: ImageSplit = ArraySplit(x, **common)
        else:
            buf = _get(z, f"x_{s}_jpeg", path)
            off = _get(z, f"x_{s}_jpeg_offsets", path).astype(np.int64)
            if buf.dtype != np.uint8 or buf.ndim != 1:
                raise DataError(f"{path}: x_{s}_jpeg must be a 1-D uint8 byte buffer")
            if off.ndim != 1 or off.size < 1 or off[0] != 0 or off[-1] != buf.size or np.any(np.diff(off) < 0):
                raise DataError(
                    f"{path}: x_{s}_jpeg_offsets must start at 0, never decrease and end at the buffer "
                    f"length {buf.size}"
                )
            n = off.size - 1
            split = EncodedSplit(buf, off, **common)
        if n != labels.shape[0]:
            raise DataError(f"{path}: split {s!r} has {n} images but y_{s} has {labels.shape[0]} labels")
        splits[s] = split
    return ImageSource(name or f"npz:{path}", splits, class_names, provenance,
                       {"file": str(path), "sha256": fsha, **(metadata or {})})
