"""Sequential streaming over WebDataset shards, split across ranks and DataLoader workers.

For iterable pipelines (a ``torch.utils.data.DataLoader`` over shards on a cluster file system,
where random seeks are slow): every (rank, worker) reads whole shards -- shard ``s`` belongs to
reader ``s mod (world_size * num_workers)`` -- so each sample is read exactly once per epoch over
all readers. Shard order and a bounded shuffle buffer are seeded by ``(seed, epoch)`` and the
reader's id, so a run is repeatable. Memory holds at most ``buffer`` decoded samples.
"""

from __future__ import annotations

import json
import random
import tarfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from fmlab.data.sources import decode_image
from fmlab.data.wds import IMAGE_EXTS, check_tail, expand_pattern
from fmlab.errors import DataError


def reader_id() -> tuple[int, int]:
    """``(this reader, number of readers)`` from torch.distributed and the DataLoader worker."""
    rank, world = 0, 1
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    info = torch.utils.data.get_worker_info()
    wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
    return rank * nw + wid, world * nw


def iter_shard(path: Path, mode: str = "RGB") -> Iterator[dict]:
    """Samples of one tar in file order: ``{"key", "image", "label"?, "caption"?, "meta"?}``.

    Raises:
        fmlab.errors.DataError: a damaged tar, or an image that cannot be decoded (both named).
    """
    current: dict | None = None
    try:
        with tarfile.open(path, "r:") as tar:
            for m in tar:
                if not m.isfile():
                    continue
                key, _, ext = m.name.rpartition("/")[2].partition(".")
                data = tar.extractfile(m).read()
                if current is not None and current["key"] != key:
                    yield _finish(current, path, mode)
                    current = None
                current = current or {"key": key}
                current[ext.lower()] = data
            check_tail(path, tar.offset)
    except tarfile.TarError as e:
        raise DataError(f"{path}: corrupt tar shard ({e})") from None
    if current is not None:
        yield _finish(current, path, mode)


def _finish(raw: dict, path: Path, mode: str = "RGB") -> dict:
    ext = next((e for e in IMAGE_EXTS if e in raw), None)
    if ext is None:
        raise DataError(f"{path}: sample {raw['key']} has no image member")
    out = {"key": raw["key"],
           "image": decode_image(raw[ext], mode, f"{path}: member {raw['key']}.{ext}")}
    if "cls" in raw:
        out["label"] = int(raw["cls"])
    if "txt" in raw:
        out["caption"] = raw["txt"].decode("utf-8")
    if "json" in raw:
        out["meta"] = json.loads(raw["json"])
    return out


class WdsStream(torch.utils.data.IterableDataset):
    """Iterate the samples of ``wds:`` shards once per epoch, this reader's shards only.

    Args:
        pattern: a shard folder or glob/brace pattern (as after ``wds:``).
        seed: seed of the shard order and the shuffle buffer.
        buffer: shuffle buffer size (0 or 1: file order).
        epoch: set with :meth:`set_epoch` to reshuffle each epoch.
    """

    def __init__(self, pattern: str, seed: int = 0, buffer: int = 1000, epoch: int = 0) -> None:
        super().__init__()
        self.files = expand_pattern(pattern)
        self.seed, self.buffer, self.epoch = int(seed), int(buffer), int(epoch)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def my_shards(self) -> list[Path]:
        """This reader's shards: a seeded permutation of all, then every ``n``-th from ``me``."""
        me, n = reader_id()
        order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.files))
        return [self.files[i] for i in order[me::n]]

    def __iter__(self) -> Iterator[dict]:
        me, _ = reader_id()
        rng = random.Random(f"{self.seed}/{self.epoch}/{me}")
        buf: list[dict] = []
        for f in self.my_shards():
            for sample in iter_shard(f):
                if self.buffer <= 1:
                    yield sample
                    continue
                if len(buf) < self.buffer:
                    buf.append(sample)
                    continue
                j = rng.randrange(len(buf))
                buf[j], sample = sample, buf[j]
                yield sample
        rng.shuffle(buf)
        yield from buf
