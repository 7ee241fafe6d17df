"""``fmlab features extract --engine ray``: the batches of a split encoded by Ray actors.

A Ray Data pipeline maps the batch start offsets through a pool of actors; each actor holds the
backbone and the split (shipped once through the object store), decodes its batch, runs the trunk
under ``no_grad`` with one intra-op thread, and returns the float32 rows. The driver writes every
batch at its rows, so the batch boundaries -- and with one thread on both sides, the bits -- are
the local engine's; the protocol (cache key) is the same, so the cache and the feature file are
shared with the local path. Augmented views (``--views``) draw from one generator across batches
in order, so they stay local.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from fmlab.errors import ConfigError, DataError


class _Encoder:
    """A Ray actor: the backbone and the split, unpacked once."""

    def __init__(self, backbone_ref: Any, split_ref: Any, batch_size: int, autocast: str | None,
                 threads: int) -> None:
        import ray

        torch.set_num_threads(threads)
        self.backbone = ray.get(backbone_ref).eval()
        self.split = ray.get(split_ref)
        self.batch_size, self.autocast = batch_size, autocast

    @torch.no_grad()
    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from fmlab.features.extract import _autocast

        starts, feats = [], []
        n = len(self.split)
        for start in batch["start"].tolist():
            idx = np.arange(start, min(start + self.batch_size, n))
            x = self.backbone.preprocess(torch.from_numpy(self.split.get_batch(idx)))
            with _autocast(torch.device("cpu"), self.autocast):
                f = self.backbone.trunk(x)
            starts.append(start)
            feats.append(f.float().contiguous().numpy().tobytes())
        return {"start": np.asarray(starts, dtype=np.int64), "features": np.asarray(feats, dtype=object)}


def ray_extractor(workers: int = 0, address: str | None = None, threads: int = 1) -> Callable:
    """An extractor for :func:`fmlab.features.cached_features` (``extract=``) running on Ray.

    Args:
        workers: actors (0: the CPUs, at most 4); each takes one CPU.
        address: a Ray cluster address; None starts a local cluster for the call.
        threads: torch intra-op threads per actor.

    Returns:
        ``extract(backbone, split, meta, *, batch_size, n_views, seed, autocast, progress)``.
    """
    from fmlab.utils.ray_cluster import import_ray

    import_ray()  # fail now, with the extra's name, when Ray is missing
    if workers < 0:
        raise ConfigError(f"--workers must be >= 0 (0 = automatic), got {workers}")

    def extract(backbone, split, meta: dict, *, batch_size: int, n_views: int, seed: int,
                autocast: str | None, progress: bool | None = None, device: str = "cpu"):
        if n_views:
            raise ConfigError("--views needs --engine local (views draw from one generator in order)")
        return _extract_ray(backbone, split, meta, batch_size, autocast, workers, address, threads)

    return extract


def _extract_ray(backbone, split, meta: dict, batch_size: int, autocast: str | None,
                 workers: int, address: str | None, threads: int):
    import os

    from fmlab.features.extract import FeatureSet
    from fmlab.utils.ray_cluster import quiet_data_context, ray_session

    n = len(split)
    if n == 0:
        raise DataError(f"split {split.name!r} of {split.origin} is empty")
    workers = workers or min(4, os.cpu_count() or 1)
    t0 = time.perf_counter()
    out: np.ndarray | None = None
    with ray_session(address, num_cpus=None if address else max(2, workers)) as ray:
        quiet_data_context(ray)
        starts = list(range(0, n, batch_size))
        ds = ray.data.from_items([{"start": s} for s in starts], override_num_blocks=len(starts))
        ds = ds.map_batches(_Encoder, batch_size=1, num_cpus=1,
                            compute=ray.data.ActorPoolStrategy(size=workers),
                            fn_constructor_args=(ray.put(backbone.cpu()), ray.put(split),
                                                 batch_size, autocast, threads))
        for row in ds.iter_rows():
            start = int(row["start"])
            f = np.frombuffer(row["features"], dtype=np.float32)
            rows = min(batch_size, n - start)
            if out is None:
                out = np.empty((n, f.size // rows), dtype=np.float32)
            out[start:start + rows] = f.reshape(rows, -1)
    feats = torch.from_numpy(out)
    if not torch.isfinite(feats).all():
        raise DataError(f"backbone {backbone.name} produced NaN/inf features on {split.origin}")
    labels = None if split.labels is None else torch.from_numpy(split.labels)
    meta = dict(meta)
    meta["seconds"] = round(time.perf_counter() - t0, 3)
    meta["origin"] = split.origin
    return FeatureSet(feats, labels, meta)
