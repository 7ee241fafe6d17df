"""Images of one domain, and the unpaired two-domain training source.

A domain is any source ``fmlab.data.open_source`` opens (``mnist``, ``npz:PATH``, ``folder:DIR``,
``fontdigits?n_train=5000`` ...) with a split, or a plain ``.npz`` file holding ``x`` (uint8
(N, H, W[, C])) and optionally ``y`` — the format ``fmlab translate apply`` reads and writes.

:class:`UnpairedSource` is an engine training source: the engine's seeded epoch permutation picks
the A images of a step, and the B images are drawn by a generator seeded with the hash of those
A indices, so B changes with A from epoch to epoch yet a resumed run draws the same pairs.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from fmlab.errors import DataError
from fmlab.gan.prep import to_gan_input


def read_x_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every array of a plain npz (``x`` required, uint8 (N, H, W[, C]) with C in 1, 3).

    Raises:
        DataError: missing file, no ``x``, wrong dtype or shape (the message names the file).
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"{p}: no such npz file")
    try:
        with np.load(p, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise DataError(f"{p}: cannot read npz ({e})") from None
    x = arrays.get("x")
    if x is None:
        raise DataError(f"{p}: needs an array 'x' of uint8 images; found {sorted(arrays)}")
    ok_shape = x.ndim == 3 or (x.ndim == 4 and x.shape[-1] in (1, 3))
    if x.dtype != np.uint8 or not ok_shape or len(x) == 0:
        raise DataError(f"{p}: 'x' must be non-empty uint8 (N, H, W) or (N, H, W, C) with C in "
                        f"1, 3; got {x.dtype} {x.shape}")
    return arrays


def load_domain(spec: str, split: str = "train", limit: int = 0,
                data_root: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """The uint8 images (and labels, if any) of one domain; ``limit`` keeps the first M (0: all).

    Args:
        spec: a plain ``.npz`` path with ``x``, or any ``open_source`` spec.
        split: the split of a source (ignored for a plain npz).
        limit: keep the first ``limit`` images.
        data_root: folder of named datasets.
    """
    from fmlab.data import open_source

    if spec.endswith(".npz") and not spec.startswith("npz:") and ":" not in spec:
        arrays = read_x_npz(spec)
        x, y = arrays["x"], arrays.get("y")
    else:
        s = open_source(spec, data_root).split(split)
        n = len(s) if not limit else min(limit, len(s))
        x = np.asarray(s.get_batch(np.arange(n)))
        y = None if s.labels is None else np.asarray(s.labels)[:n]
        if x.dtype != np.uint8:
            raise DataError(f"{spec}:{split}: images must be uint8, got {x.dtype}")
    if limit:
        x, y = x[:limit], (None if y is None else y[:limit])
    return x, (None if y is None else np.asarray(y, np.int64))


@dataclass
class UnpairedSource:
    """Two unpaired image sets as one engine source: ``get_batch`` → ``{"a", "b"}`` in [-1, 1]."""

    a: np.ndarray
    b: np.ndarray
    channels: int
    img_size: int

    def __len__(self) -> int:
        return len(self.a)

    def get_batch(self, indices: np.ndarray) -> dict[str, torch.Tensor]:
        idx = np.asarray(indices, dtype=np.int64)
        seed = int.from_bytes(hashlib.sha256(idx.tobytes()).digest()[:8], "little")
        jdx = np.random.default_rng(seed).integers(0, len(self.b), size=len(idx))
        return {"a": to_gan_input(torch.from_numpy(np.ascontiguousarray(self.a[idx])),
                                  self.channels, self.img_size),
                "b": to_gan_input(torch.from_numpy(np.ascontiguousarray(self.b[jdx])),
                                  self.channels, self.img_size)}

    @cached_property
    def fingerprint(self) -> str:
        """Hash of both image sets: a resume on other data is refused by the engine."""
        h = hashlib.sha256()
        for arr in (self.a, self.b):
            h.update(str(arr.shape).encode())
            h.update(np.ascontiguousarray(arr).tobytes())
        return h.hexdigest()

    selection_keys = "data.a / data.b / data.a_limit / data.b_limit"
