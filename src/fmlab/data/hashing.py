"""Content hashes of data files, memoised per (path, size, mtime) within a process."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fmlab.utils.io import sha256_file, sha256_json

_MEMO: dict[tuple[str, int, int], str] = {}


def file_hash(path: str | os.PathLike) -> str:
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    if key not in _MEMO:
        _MEMO[key] = sha256_file(p)
    return _MEMO[key]


def split_hash(file_sha256: str, split: str, extra: dict | None = None) -> str:
    """Hash of one split of a file: the file's bytes plus which split (and any selection) was read."""
    return sha256_json({"file": file_sha256, "split": split, **(extra or {})})


def image_sha256(images) -> np.ndarray:
    """sha256 of each image's shape and uint8 pixels, as ``(N, 32)`` uint8 digests.

    The leak checks (GRAM's meta-training images, PVP's upstream images) compare these with a
    downstream test split: the same picture stored in two files (or two formats that decode
    identically) gets the same digest, which a file hash would miss; a resized or re-encoded
    copy does not.

    Args:
        images: ``(N, H, W[, C])`` uint8.

    Returns:
        ``(N, 32)`` uint8 digests.

    Examples:
        >>> a = np.zeros((2, 4, 4, 3), np.uint8); a[1, 0, 0, 0] = 1
        >>> h = image_sha256(a)
        >>> h.shape, bool((h[0] == h[1]).all()), bool((image_sha256(a[:1]) == h[:1]).all())
        ((2, 32), False, True)
    """
    import hashlib

    arr = np.ascontiguousarray(images, dtype=np.uint8)
    shape = repr(tuple(arr.shape[1:])).encode()
    out = np.empty((len(arr), 32), np.uint8)
    for i, img in enumerate(arr):
        out[i] = np.frombuffer(hashlib.sha256(shape + img.tobytes()).digest(), np.uint8)
    return out


def split_image_sha256(split, indices=None, chunk: int = 2048) -> np.ndarray:
    """:func:`image_sha256` of a split's images (all, or ``indices``), decoded ``chunk`` at a time."""
    idx = np.arange(len(split)) if indices is None else np.asarray(indices, np.int64)
    parts = [image_sha256(split.get_batch(idx[i:i + chunk])) for i in range(0, len(idx), chunk)]
    return np.concatenate(parts) if parts else np.zeros((0, 32), np.uint8)


def image_content_hashes(split) -> list[str]:
    """:func:`split_image_sha256` as hex strings, in split order (for JSON files).

    Examples:
        >>> import numpy as np
        >>> from fmlab.data.sources import ArraySplit
        >>> x = np.zeros((3, 2, 2, 3), np.uint8); x[2] = 1
        >>> split = ArraySplit(x, name="t", labels=None, class_names=None, content_hash="",
        ...                    origin="x")
        >>> h = image_content_hashes(split)
        >>> h[0] == h[1], h[0] == h[2], len(h[0])
        (True, False, 64)
    """
    return [bytes(d).hex() for d in split_image_sha256(split)]
