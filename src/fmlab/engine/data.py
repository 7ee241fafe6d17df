"""Data order for the loop: seeded per-epoch permutations, rank sharding, batch fetching.

The order is a pure function of (seed, epoch, position), so a checkpoint only has to record the
epoch and the number of steps already taken in it. Sharding follows DistributedSampler (with
``drop_last``): rank ``r`` of ``W`` takes every W-th index of the global batch, so the union of
the ranks' micro-batches is exactly the single-process micro-batch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

import numpy as np
import torch

from fmlab.errors import DataError

Batch = dict[str, torch.Tensor]
Transform = Callable[[Batch, torch.Generator], Batch]


class TrainSource(Protocol):
    """What the engine trains on: a length and a batch getter."""

    def __len__(self) -> int: ...

    def get_batch(self, indices: np.ndarray) -> Any: ...


class TensorSource:
    """In-memory source over aligned tensors (tests, benchmarks, small data).

    ``get_batch`` returns ``{"images": ..., "labels": ...}`` plus any extra named tensors.
    """

    def __init__(self, images: Any, labels: Any = None, **tensors: Any) -> None:
        self.tensors: dict[str, torch.Tensor] = {"images": torch.as_tensor(images)}
        if labels is not None:
            self.tensors["labels"] = torch.as_tensor(labels, dtype=torch.int64)
        for name, t in tensors.items():
            self.tensors[name] = torch.as_tensor(t)
        n = len(self.tensors["images"])
        for name, t in self.tensors.items():
            if len(t) != n:
                raise DataError(f"TensorSource: {name!r} has {len(t)} rows, images have {n}")
        self.labels = self.tensors["labels"].numpy() if labels is not None else None

    def __len__(self) -> int:
        return len(self.tensors["images"])

    def get_batch(self, indices: np.ndarray) -> Batch:
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        return {name: t[idx] for name, t in self.tensors.items()}


class SplitSource:
    """A source that decodes each batch from an image split on demand (``wds:`` shards).

    Memory holds one batch of pixels, so a training run's footprint does not grow with the
    dataset; the engine's permutation, rank split and resume apply unchanged.

    Args:
        split: an :class:`~fmlab.data.sources.ImageSplit`.
        rows: the split's rows this source covers (its index ``i`` is ``split[rows[i]]``).
    """

    def __init__(self, split: Any, rows: np.ndarray) -> None:
        self.split, self.rows = split, np.asarray(rows, dtype=np.int64)
        self.labels = None if split.labels is None else split.labels[self.rows]

    def __len__(self) -> int:
        return int(self.rows.size)

    def get_batch(self, indices: np.ndarray) -> Batch:
        idx = np.asarray(indices, dtype=np.int64)
        out = {"images": torch.from_numpy(self.split.get_batch(self.rows[idx])),
               "index": torch.from_numpy(idx)}
        if self.labels is not None:
            out["labels"] = torch.from_numpy(self.labels[idx])
        return out


def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    """The shuffled order of epoch ``epoch``: ``torch.randperm`` seeded with ``seed + epoch``.

    Same rule as ``DistributedSampler.set_epoch``.
    """
    g = torch.Generator()
    g.manual_seed(seed + epoch)
    return torch.randperm(n, generator=g).numpy()


def micro_batch_indices(perm: np.ndarray, k: int, batch_size: int, rank: int = 0,
                        world_size: int = 1) -> np.ndarray:
    """Indices of global micro-batch ``k`` of an epoch, this rank's shard (``[rank::world]``)."""
    return perm[k * batch_size:(k + 1) * batch_size][rank::world_size]


def fetch_batch(source: Any, indices: np.ndarray) -> Batch:
    """``source.get_batch(indices)`` as a dict of tensors.

    Sources that return a bare array (e.g. an image split's uint8 batch) become
    ``{"images": ...}``, with ``labels`` added from ``source.labels`` when the source has them.
    """
    out = source.get_batch(indices)
    if isinstance(out, Mapping):
        return {k: _as_tensor(v) for k, v in out.items()}
    batch = {"images": _as_tensor(out)}
    labels = getattr(source, "labels", None)
    if labels is not None:
        batch["labels"] = torch.as_tensor(np.asarray(labels)[indices], dtype=torch.int64)
    return batch


def _as_tensor(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        return v
    if isinstance(v, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(v))
    return v


def to_device(batch: Batch, device: torch.device) -> Batch:
    non_blocking = device.type == "cuda"
    return {k: v.to(device, non_blocking=non_blocking) if isinstance(v, torch.Tensor) else v
            for k, v in batch.items()}


def mix_seed(*parts: int) -> int:
    """A 63-bit seed from integers (splitmix64 finaliser), so nearby steps get unrelated streams."""
    h = 0x9E3779B97F4A7C15
    mask = (1 << 64) - 1
    for p in parts:
        h = (h ^ (int(p) & mask)) & mask
        h = (h + 0x9E3779B97F4A7C15) & mask
        z = h
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        h = z ^ (z >> 31)
    return h & ((1 << 63) - 1)


def seed_global_rng(seed: int, device: torch.device) -> None:
    """Seed the CPU generator (and the training GPU's): what ``torch.manual_seed`` does, minus
    its lazy seeding of every other backend (CUDA/XPU/MTIA), which records a stack trace per
    call and cost ~0.4 ms per step on a CUDA build."""
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        torch.cuda.default_generators[index].manual_seed(seed)
