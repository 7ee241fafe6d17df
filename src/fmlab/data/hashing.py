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
