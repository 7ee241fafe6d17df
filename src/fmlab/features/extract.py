"""Batched, no-grad feature extraction with a content-addressed cache.

The cache key covers everything that changes the numbers: backbone name, the sha256 of the
trunk's tensors as they are when the features are asked for (not the weights file they came
from: a random init or a model changed in memory must never hit another model's entry), the
preprocessing, the split's content hash, the number of augmented views and their seed, and the
compute dtype. A second identical call loads the file instead of running the model. Files are
safetensors (``features`` float32 (N, D) or (V, N, D) for views, ``labels`` int64) with the
protocol as JSON metadata, written atomically under ``$FMLAB_CACHE/features``; temporary files
that a killed writer left there are swept when the cache is next used.
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
from fmlab.utils.validation import non_negative_int, positive_int

FORMAT_VERSION = 2  # 2: keyed on the trunk's tensors (state_sha256), not only the weights file
STALE_TEMP_SECONDS = 15 * 60  # a cache write takes seconds; older temporaries belong to dead writers


@dataclass
class FeatureSet:
    """Features of one split, with the labels and the protocol that produced them.

    Attributes:
        features: float32 ``(N, D)``, or ``(V, N, D)`` for ``V`` augmented views.
        labels: int64 ``(N,)``, or None for an unlabelled split.
        meta: the protocol (:func:`feature_key`) plus ``seconds``, ``origin`` and, from
            :func:`cached_features`, ``cache`` (``"hit"``/``"miss"``).
    """

    features: torch.Tensor  # (N, D) or (V, N, D)
    labels: torch.Tensor | None
    meta: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.features.shape[-2])

    def numpy(self) -> tuple[np.ndarray, np.ndarray | None]:
        return self.features.numpy(), None if self.labels is None else self.labels.numpy()


def feature_key(backbone, split: ImageSplit, n_views: int = 0, seed: int = 0,
                autocast: str | None = None, state_sha256: str | None = None) -> dict:
    """The protocol dict whose hash addresses the cache (also stored as the file's metadata).

    Args:
        backbone: a :class:`~fmlab.models.Backbone`.
        split: the split the features are of.
        n_views: augmented views per image (0: plain features).
        seed: seed of the views.
        autocast: ``"bf16"`` or None.
        state_sha256: hash of the trunk's tensors; computed from ``backbone.trunk`` when None.

    Returns:
        A JSON-able dict.
    """
    if state_sha256 is None:
        from fmlab.models.backbone import state_sha256 as _state

        state_sha256 = _state(backbone.trunk)
    return {
        "format": FORMAT_VERSION,
        **backbone.protocol(),
        "trunk_state_sha256": state_sha256,
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


def _check_args(batch_size: int, n_views: int, seed: int) -> None:
    positive_int("batch_size", batch_size)
    non_negative_int("n_views", n_views)
    non_negative_int("seed", seed)


@torch.no_grad()
def extract_features(
    backbone, split: ImageSplit, *, batch_size: int = 256, n_views: int = 0, seed: int = 0,
    autocast: str | None = None, progress: bool | None = None, device: str | torch.device = "cpu",
) -> FeatureSet:
    """Run ``backbone.encode`` over ``split`` in batches (one decoded batch in memory at a time).

    Args:
        backbone: a :class:`~fmlab.models.Backbone`.
        split: the images (and labels) to encode.
        batch_size: images per forward pass (>= 1).
        n_views: > 0 returns features of that many random resized-crop + flip views per image,
            shape (V, N, D), instead of the plain features.
        seed: seed of the views.
        autocast: ``"bf16"`` for a bf16 forward pass, None for float32.
        progress: show a progress bar (default: when stderr is a terminal).
        device: where to run the backbone.

    Returns:
        The :class:`FeatureSet` (uncached; see :func:`cached_features`).

    Raises:
        fmlab.errors.ConfigError: ``batch_size < 1``, ``n_views < 0`` or ``seed < 0``.
        fmlab.errors.DataError: an empty split, or NaN/inf features.
    """
    _check_args(batch_size, n_views, seed)
    return _extract(backbone, split, feature_key(backbone, split, n_views, seed, autocast),
                    batch_size=batch_size, n_views=n_views, seed=seed, autocast=autocast,
                    progress=progress, device=device)


@torch.no_grad()
def _extract(backbone, split: ImageSplit, meta: dict, *, batch_size: int, n_views: int, seed: int,
             autocast: str | None, progress: bool | None, device: str | torch.device = "cpu") -> FeatureSet:
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
    meta = dict(meta)
    meta["seconds"] = round(time.perf_counter() - t0, 3)
    meta["origin"] = split.origin
    return FeatureSet(feats, labels, meta)


def save_features(fs: FeatureSet, path: str | Path) -> Path:
    """Write ``fs`` as safetensors (``features``, ``labels``; ``meta`` as JSON metadata), atomically.

    Args:
        fs: the features.
        path: the output file (its folder is created).

    Returns:
        ``path``.

    Examples:
        >>> import tempfile, os
        >>> fs = FeatureSet(torch.ones(3, 2), torch.arange(3), {"backbone": "toy"})
        >>> p = save_features(fs, os.path.join(tempfile.mkdtemp(), "f.safetensors"))
        >>> back = load_features(p)
        >>> torch.equal(back.features, fs.features), back.labels.tolist(), back.meta
        (True, [0, 1, 2], {'backbone': 'toy'})
    """
    from safetensors.torch import save_file

    tensors = {"features": fs.features.contiguous()}
    if fs.labels is not None:
        tensors["labels"] = fs.labels.contiguous()
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"fmlab": json.dumps(fs.meta, sort_keys=True)})
    return Path(path)


def load_features(path: str | Path) -> FeatureSet:
    """Read a feature file written by :func:`save_features` (or the cache).

    Args:
        path: a ``.safetensors`` feature file.

    Returns:
        The :class:`FeatureSet`, its ``meta`` read back from the file's metadata.

    Raises:
        fmlab.errors.DataError: the file is missing or not a readable feature file.
    """
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
                    use_cache: bool = True, cache_root: str | Path | None = None,
                    extract=None) -> FeatureSet:
    """:func:`extract_features` behind the content-addressed cache.

    The key hashes the trunk's tensors at the time of the call (see :func:`feature_key`), so two
    random initialisations, or a model changed in memory after a first call, never share an
    entry. Opening the cache also removes temporary files older than
    :data:`STALE_TEMP_SECONDS` that a killed writer left behind.

    Args:
        backbone: a :class:`~fmlab.models.Backbone`.
        split: the images to encode.
        n_views, seed, autocast, batch_size, progress: as in :func:`extract_features`.
        use_cache: False computes without reading or writing the cache.
        cache_root: the cache folder (default ``$FMLAB_CACHE/features``).
        extract: another extractor with the signature of the local one (e.g.
            :func:`fmlab.features.ray_engine.ray_extractor`); the cache key is the same.

    Returns:
        The :class:`FeatureSet`; ``meta["cache"]`` says ``"hit"`` or ``"miss"``.

    Examples:
        >>> import tempfile
        >>> from fmlab.data import open_source
        >>> from fmlab.data.sources import SubsetSplit
        >>> from fmlab.models import create_backbone
        >>> split = SubsetSplit(open_source("cifar10_demo").split("test"), np.arange(8))
        >>> bb, root = create_backbone("resnet20_cifar", seed=0), tempfile.mkdtemp()
        >>> a = cached_features(bb, split, progress=False, cache_root=root)
        >>> b = cached_features(bb, split, progress=False, cache_root=root)
        >>> a.meta["cache"], b.meta["cache"], tuple(b.features.shape), torch.equal(a.features, b.features)
        ('miss', 'hit', (8, 64), True)
        >>> other = create_backbone("resnet20_cifar", seed=1)  # another random init: its own entry
        >>> cached_features(other, split, progress=False, cache_root=root).meta["cache"]
        'miss'
    """
    _check_args(batch_size, n_views, seed)
    meta = feature_key(backbone, split, n_views, seed, autocast)
    key = sha256_json(meta)
    root = Path(cache_root) if cache_root else cache_dir() / "features"
    path = root / f"{key}.safetensors"
    if use_cache:
        sweep_stale_temporaries(root)
    if use_cache and path.is_file():
        try:
            fs = load_features(path)
            fs.meta["cache"] = "hit"
            return fs
        except DataError:
            pass  # a damaged cache entry is recomputed and replaced
    fs = (extract or _extract)(backbone, split, meta, batch_size=batch_size, n_views=n_views,
                               seed=seed, autocast=autocast, progress=progress)
    if use_cache:
        save_features(fs, path)
    fs.meta["cache"] = "miss"
    fs.meta["cache_path"] = str(path)
    return fs


def sweep_stale_temporaries(root: str | Path, max_age: float = STALE_TEMP_SECONDS) -> list[Path]:
    """Delete temporary files (``.<name>.<random>.safetensors`` / ``.tmp``) older than ``max_age``.

    :func:`fmlab.utils.io.atomic_path` writes a cache entry under a hidden temporary name and
    renames it into place; a writer killed in between (SIGKILL, power loss) leaves the temporary
    behind for good. A live write refreshes its file's mtime, so only dead writers' files are old.

    Args:
        root: the cache folder (a missing folder is fine).
        max_age: seconds since the last modification.

    Returns:
        The paths removed.
    """
    root = Path(root)
    if not root.is_dir():
        return []
    now, removed = time.time(), []
    for p in root.iterdir():
        name = p.name
        if not (name.startswith(".") and name.endswith((".safetensors", ".tmp"))):
            continue
        try:
            if p.is_file() and not p.is_symlink() and now - p.stat().st_mtime > max_age:
                p.unlink()
                removed.append(p)
        except OSError:  # another process swept it first, or the folder is read-only
            continue
    return removed
