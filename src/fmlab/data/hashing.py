"""Content hashes of data files, memoised per (path, size, mtime) within a process."""

from __future__ import annotations

import os
from pathlib import Path

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


def image_content_hashes(split, batch: int = 512) -> list[str]:
    """sha256 of each image's decoded pixels (shape + uint8 bytes), in split order.

    The leak checks compare these between a meta-training / upstream source and a downstream
    test split: the same picture stored in two files (or two formats that decode identically)
    gets the same hash, which a file hash would miss.

    Args:
        split: an image split (``len`` + ``get_batch`` of uint8 ``(B, H, W[, C])``).
        batch: images decoded at a time.

    Returns:
        One hex digest per image.

    Examples:
        >>> import numpy as np
        >>> from fmlab.data.sources import ArraySplit
        >>> x = np.zeros((3, 2, 2, 3), np.uint8); x[2] = 1
        >>> split = ArraySplit(x, name="t", labels=None, class_names=None, content_hash="",
        ...                    origin="x")
        >>> h = image_content_hashes(split)
        >>> h[0] == h[1], h[0] == h[2]
        (True, False)
    """
    import hashlib

    import numpy as np

    out: list[str] = []
    for start in range(0, len(split), batch):
        images = np.asarray(split.get_batch(np.arange(start, min(start + batch, len(split)))))
        for im in images:
            h = hashlib.sha256(str(im.shape).encode())
            h.update(np.ascontiguousarray(im, dtype=np.uint8).tobytes())
            out.append(h.hexdigest())
    return out
