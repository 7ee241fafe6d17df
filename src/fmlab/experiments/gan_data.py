"""The GAN's training images: a split, cut by ``data.limit`` / ``data.fraction``, held in memory.

``limit`` keeps the first M images (smoke runs); ``fraction`` then keeps a seeded,
class-balanced subset (the DiffAugment low-data experiments: every class gets the same number
of images, ``round(fraction · N / K)``, capped by the class's size). Which images were kept is a
pure function of (split, limit, fraction, seed) and is hashed into ``selection_sha256`` so a
resumed run can refuse a different selection.

The result is an engine training source (``len`` + ``get_batch``), so the loop draws batches with
the engine's seeded epoch permutations.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from fmlab.errors import ConfigError, DataError
from fmlab.experiments.gan_config import GANDataConfig
from fmlab.gan.prep import to_gan_input


def select_training_indices(n_total: int, labels: np.ndarray | None, limit: int = 0,
                            fraction: float = 1.0, seed: int = 0) -> np.ndarray:
    """Sorted indices into the split: the first ``limit``, then a class-balanced ``fraction``."""
    if limit < 0:
        raise ConfigError(f"data.limit: {limit} must be >= 0")
    if not 0.0 < fraction <= 1.0:
        raise ConfigError(f"data.fraction: {fraction} must lie in (0, 1]")
    if limit > n_total:
        raise ConfigError(f"data.limit: {limit} is larger than the split ({n_total} images)")
    idx = np.arange(limit or n_total)
    if fraction >= 1.0:
        return idx
    rng = np.random.default_rng(seed)
    if labels is None:
        k = max(1, round(fraction * len(idx)))
        return np.sort(rng.choice(idx, size=k, replace=False))
    y = np.asarray(labels)[idx]
    classes = np.unique(y)
    per_class = max(1, round(fraction * len(idx) / len(classes)))
    keep = [rng.permutation(idx[y == c])[:per_class] for c in classes]
    return np.sort(np.concatenate(keep))


@dataclass
class GANTrainData:
    """Selected uint8 images (N, H, W[, C]) and labels, as the engine's training source.

    ``images`` holds the decoded pixels; for a streaming split (``wds:`` shards) it is None and
    each batch is decoded from ``split`` on demand, so memory does not grow with the dataset.
    """

    images: np.ndarray | None
    labels: np.ndarray | None
    indices: np.ndarray           # rows of the split that were kept
    class_names: list[str] | None
    content_hash: str | None
    origin: str
    # set: get_batch converts to the nets' float (B, C, H, W) in [-1, 1] here, on the CPU, so the
    # numbers do not depend on the training device (None: uint8 batches as stored)
    channels: int | None = None
    img_size: int | None = None
    split: Any = None  # the streaming split when ``images`` is None

    def __len__(self) -> int:
        return len(self.indices)

    def get_batch(self, indices: np.ndarray) -> dict[str, torch.Tensor]:
        idx = np.asarray(indices, dtype=np.int64)
        raw = self.images[idx] if self.images is not None else self.split.get_batch(self.indices[idx])
        images = torch.from_numpy(np.ascontiguousarray(raw))
        if self.channels is not None or self.img_size is not None:
            images = to_gan_input(images, self.channels, self.img_size)
        batch = {"images": images}
        if self.labels is not None:
            batch["labels"] = torch.from_numpy(self.labels[idx])
        return batch

    @property
    def num_classes(self) -> int:
        if self.class_names:
            return len(self.class_names)
        return int(self.labels.max()) + 1 if self.labels is not None and len(self.labels) else 0

    #: the config keys that choose the images (named by the engine when a resume differs)
    selection_keys = "data.limit / data.fraction / data.fraction_seed"

    @property
    def selection_sha256(self) -> str:
        return hashlib.sha256(self.indices.astype(np.int64).tobytes()).hexdigest()

    @property
    def fingerprint(self) -> str:
        """What the engine checkpoints and compares on resume: the selection's hash."""
        return self.selection_sha256

    def info(self) -> dict:
        return {"origin": self.origin, "n": len(self), "content_hash": self.content_hash,
                "selection_sha256": self.selection_sha256,
                "class_counts": (np.bincount(self.labels).tolist()
                                 if self.labels is not None else None)}


def load_train_data(cfg: GANDataConfig) -> GANTrainData:
    """Open ``cfg.source``, pick the images, decode them once into memory."""
    from fmlab.data import open_source

    split = open_source(cfg.source, cfg.data_root).split(cfg.split)
    labels = None if split.labels is None else np.asarray(split.labels, dtype=np.int64)
    if cfg.conditional and labels is None:
        raise DataError(f"data.conditional: {cfg.source}:{cfg.split} has no labels")
    idx = select_training_indices(len(split), labels, cfg.limit, cfg.fraction, cfg.fraction_seed)
    if len(idx) == 0:
        raise DataError(f"{cfg.source}:{cfg.split}: no training images selected")
    streams = getattr(split, "streams", False)  # wds: shards: decode per batch, memory stays flat
    images = np.asarray(split.get_batch(idx[:1] if streams else idx))
    if images.dtype != np.uint8:
        raise DataError(f"{cfg.source}:{cfg.split}: images must be uint8, got {images.dtype}")
    return GANTrainData(images=None if streams else images,
                        labels=None if labels is None else labels[idx],
                        indices=idx, class_names=split.class_names,
                        content_hash=split.content_hash, origin=f"{cfg.source}:{cfg.split}",
                        channels=cfg.channels, img_size=cfg.img_size,
                        split=split if streams else None)
