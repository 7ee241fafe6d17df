"""Batched, no-grad feature extraction with a content-addressed cache.

The cache key covers everything that changes the numbers: backbone name, weights sha256,
preprocessing, the split's content hash, the number of augmented views and their seed, and the
compute dtype. A second identical call loads the file instead of running the model. Files are
safetensors (``features`` float32 (N, D) or (V, N, D) for views, ``labels`` int64) with the
protocol as JSON metadata, written atomically under ``$FMLAB_CACHE/features``.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from fmlab.data.sources import ImageSplit
from fmlab.errors import DataError
from fmlab.utils.io import atomic_path, cache_dir, sha256_json

FORMAT_VERSION = 1


@dataclass
class FeatureSet:
    """Features of one split, with the labels and the protocol that produced them."""

    features: torch.Tensor  # (N, D) or (V, N, D)
    labels: torch.Tensor | None
    meta: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.features.shape[-2])

    def numpy(self) -> tuple[np.ndarray, np.ndarray | None]:
        return self.features.numpy(), None if self.labels is None else self.labels.numpy()


def feature_key(backbone, split: ImageSplit, n_views: int = 0, seed: int = 0,
                autocast: str | None = None) -> dict:
    """The protocol dict whose hash addresses the cache (also stored as the file's metadata)."""
    return {
        "format": FORMAT_VERSION,
        **backbone.protocol(),
        "split": split.name,
        "split_content_hash": split.content_hash,
        "n": len(split),
        "n_views": int(n_views),
        "view_seed": int(seed) if n_views else None,
        "view_augment": "rrc(0.5,1)+hflip" if n_views else None,
        "autocast": autocast,
    }


def _autocast(device: torch.device, autocast: str | None):
    if autocast in (None, "none", "fp32"):
        return contextlib.nullcontext()
    if autocast != "bf16":
        raise DataError(f"unknown autocast {autocast!r}; use bf16 or none")
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


@torch.no_grad()
def extract_features(
    backbone, split: ImageSplit, *, batch_size: int = 256, n_views: int = 0, seed: int = 0,
    autocast: str | None = None, progress: bool | None = None, device: str | torch.device = "cpu",
) -> FeatureSet:
    """Run ``backbone.encode`` over ``split`` in batches (one decoded batch in memory at a time).

    ``n_views > 0`` returns features of that many random resized-crop + flip views per image,
    shape (V, N, D), instead of the plain features.
    """
    from fmlab.features.views import random_resized_crop_flip

    device = torch.device(device)
    backbone = backbone.to(device).eval()
    n = len(split)
    views = max(1, n_views)
    gen = torch.Generator().manual_seed(int(seed))
    out: torch.Tensor | None = None
    show = sys.stderr.isatty() if progress is None else progress
    bar = None
    if show:
        from tqdm import tqdm

        bar = tqdm(total=n * views, unit="img", desc=f"features {backbone.name}", file=sys.stderr)
    t0 = time.perf_counter()
    for idx, images in split.iter_batches(batch_size):
        x = backbone.preprocess(torch.from_numpy(images))
        for v in range(views):
            xv = random_resized_crop_flip(x, gen) if n_views else x
            with _autocast(device, autocast):
                f = backbone.trunk(xv.to(device))
            f = f.float().cpu()
            if out is None:
                out = torch.empty((views, n, f.shape[1]), dtype=torch.float32)
            out[v, idx[0]:idx[0] + len(idx)] = f
            if bar is not None:
                bar.update(len(idx))
    if bar is not None:
        bar.close()
    if out is None:
        raise DataError(f"split {split.name!r} of {split.origin} is empty")
    feats = out if n_views else out[0]
    if not torch.isfinite(feats).all():
        raise DataError(f"backbone {backbone.name} produced NaN/inf features on {split.origin}")
    labels = None if split.labels is None else torch.from_numpy(split.labels)
    meta = feature_key(backbone, split, n_views, seed, autocast)
    meta["seconds"] = round(time.perf_counter() - t0, 3)
    meta["origin"] = split.origin
    return FeatureSet(feats, labels, meta)


def save_features(fs: FeatureSet, path: str | Path) -> Path:
    from safetensors.torch import save_file

    tensors = {"features": fs.features.contiguous()}
    if fs.labels is not None:
        tensors["labels"] = fs.labels.contiguous()
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"fmlab": json.dumps(fs.meta, sort_keys=True)})
    return Path(path)


def load_features(path: str | Path) -> FeatureSet:
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise DataError(f"feature file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("fmlab", "{}"))
            feats = f.get_tensor("features")
            labels = f.get_tensor("labels") if "labels" in f.keys() else None
    except Exception as e:
        raise DataError(f"{path}: not a readable fmlab feature file ({e})") from None
    return FeatureSet(feats, labels, meta)


def cached_features(backbone, split: ImageSplit, *, n_views: int = 0, seed: int = 0,
                    autocast: str | None = None, batch_size: int = 256, progress: bool | None = None,
                    use_cache: bool = True, cache_root: str | Path | None = None) -> FeatureSet:
    """:func:`extract_features` behind the content-addressed cache."""
    key = sha256_json(feature_key(backbone, split, n_views, seed, autocast))
    path = Path(cache_root) if cache_root else cache_dir() / "features"
    path = path / f"{key}.safetensors"
    if use_cache and path.is_file():
        try:
            fs = load_features(path)
            fs.meta["cache"] = "hit"
            return fs
        except DataError:
            pass  # a damaged cache entry is recomputed and replaced
    fs = extract_features(backbone, split, batch_size=batch_size, n_views=n_views, seed=seed,
                          autocast=autocast, progress=progress)
    if use_cache:
        save_features(fs, path)
    fs.meta["cache"] = "miss"
    fs.meta["cache_path"] = str(path)
    return fs
