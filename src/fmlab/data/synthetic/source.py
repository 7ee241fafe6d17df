"""Synthetic sources: a registered generator over a labelled object pool, as an fmlab source.

``open_synthetic("canvas?objects=npz:PATH&size=64&n_train=1000")`` gives a
:class:`SyntheticSource` whose ``train`` split renders with the pool's train objects only and whose
``test`` split with its test objects only, so nothing leaks. Splits are :class:`ImageSplit`\\ s
(every command that reads images accepts them) that also carry their captions
(``captions``, ``caption_image_index``, ``images``), so the source is an image-text source too.
"""

from __future__ import annotations

import difflib
import inspect
import os
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from fmlab.data.sources import ImageSplit, ImageTextSource, ImageTextSplit
from fmlab.data.synthetic.registry import SyntheticKind, synthetic_kinds
from fmlab.errors import ConfigError, DataError
from fmlab.utils.validation import non_negative_int, positive_int

COMMON_PARAMS: dict[str, Any] = {"objects": "mnist", "n_train": 10000, "n_test": 2000, "seed": 0}
_SPLIT_OFFSET = {"train": 0, "test": 1}  # split seed = 2 * seed + offset: the splits never coincide


def parse_synthetic_spec(spec: str) -> tuple[SyntheticKind, dict[str, Any]]:
    """Split ``kind?key=value&...`` into the kind and its typed parameters (defaults filled in).

    Args:
        spec: the source spec.

    Returns:
        ``(kind, params)`` with every common and kind parameter.

    Raises:
        ConfigError: unknown kind or parameter (with the allowed keys), or a badly typed value.

    Examples:
        >>> kind, p = parse_synthetic_spec("canvas?size=32&n_test=10")
        >>> kind.name, p["size"], p["n_test"], p["objects"]
        ('canvas', 32, 10, 'mnist')
    """
    head, _, query = spec.partition("?")
    kinds = synthetic_kinds()
    if head not in kinds:
        raise ConfigError(f"unknown synthetic source {head!r}; kinds: {', '.join(sorted(kinds))}")
    kind = kinds[head]
    defaults = {**COMMON_PARAMS, **kind.params}
    params = dict(defaults)
    for item in filter(None, query.split("&")):
        key, eq, value = item.partition("=")
        if key not in defaults:
            near = difflib.get_close_matches(key, defaults, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise ConfigError(f"{head}: unknown parameter {key!r}{hint}; allowed: {', '.join(defaults)}")
        if not eq:
            raise ConfigError(f"{head}: parameter {key!r} has no value; write {key}=VALUE")
        params[key] = _typed(head, key, value, defaults[key])
    params["n_train"] = positive_int("n_train", params["n_train"])
    params["n_test"] = positive_int("n_test", params["n_test"])
    params["seed"] = non_negative_int("seed", params["seed"])
    if str(params["objects"]).partition("?")[0] in kinds:
        raise ConfigError(f"objects: {params['objects']!r} is synthetic; the pool must be a real labelled source")
    return kind, params


def _typed(kind: str, key: str, value: str, default: Any) -> Any:
    """``value`` converted to the type of ``default``; the error names the parameter."""
    try:
        if isinstance(default, bool):
            if value.lower() not in ("0", "1", "true", "false"):
                raise ValueError
            return value.lower() in ("1", "true")
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
    except ValueError:
        raise ConfigError(f"{kind}: parameter {key}: {value!r} must be a {type(default).__name__}") from None
    return value


class SyntheticSplit(ImageSplit):
    """A fixed-length split rendered on demand from a pool split; it carries captions too.

    Args:
        kind: the registered generator.
        pool: the labelled pool split its objects come from.
        name: ``train`` or ``test``.
        n: number of samples.
        seed: this split's seed.
        params: the generator's own parameters.
        content_hash: hash of the spec's parameters and the pool split's hash.
        origin: the spec, for error messages.
    """

    def __init__(self, kind: SyntheticKind, pool: ImageSplit, name: str, n: int, seed: int,
                 params: dict[str, Any], content_hash: str, origin: str) -> None:
        self.kind, self.pool, self.n, self.seed, self.params = kind, pool, n, seed, params
        self._labels: np.ndarray | None = None
        super().__init__(name=name, labels=None, class_names=pool.class_names,
                         content_hash=content_hash, origin=origin)

    @property
    def labels(self) -> np.ndarray | None:  # type: ignore[override]
        """Each sample's class: ``label`` of the layout, else its first object's label."""
        if self._labels is None:
            self._labels = self._describe(np.arange(self.n))[0]
        return self._labels

    @labels.setter
    def labels(self, value: np.ndarray | None) -> None:
        self._labels = value

    def __len__(self) -> int:
        return self.n

    @cached_property
    def _pool_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return self.pool.decode(np.arange(len(self.pool))), np.asarray(self.pool.labels, np.int64)

    def _extra(self, fn: Any) -> dict[str, Any]:
        names = inspect.signature(fn).parameters
        return {"class_names": self.class_names} if "class_names" in names else {}

    def render(self, indices: np.ndarray | list[int]) -> dict:
        """Everything the generator returns for ``indices`` (images, boxes, masks, captions ...).

        Args:
            indices: samples of this split (0 <= i < len).

        Returns:
            The generator's dict.
        """
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= self.n):
            raise DataError(f"{self.origin}: index out of range for split {self.name!r} of {self.n} samples")
        images, labels = self._pool_arrays
        fn = self.kind.render
        return fn(images, labels, idx, self.seed, **self.params, **self._extra(fn))

    def _decode(self, idx: np.ndarray) -> np.ndarray:
        return self.render(idx)["images"]

    def _describe(self, idx: np.ndarray, chunk: int = 4096) -> tuple[np.ndarray | None, list[str]]:
        """Labels and captions of ``idx``: from the layout when the kind has one, else rendered."""
        labels, caps = [], []
        for s in range(0, len(idx), chunk):
            part = idx[s:s + chunk]
            if self.kind.layout is not None:
                out = self.kind.layout(np.asarray(self.pool.labels, np.int64), part, self.seed, **self.params)
                if self.kind.captions is not None:
                    out = {**out, "captions": self.kind.captions(out, self.class_names)}
            else:
                out = self.render(part)
            lab = out.get("label", out.get("labels"))
            labels.append(None if lab is None else (lab[:, 0] if lab.ndim == 2 else lab))
            caps += list(out.get("captions") or [])
        lab = None if not labels or labels[0] is None else np.concatenate(labels).astype(np.int64)
        return lab, caps

    @cached_property
    def captions(self) -> list[str]:
        """One caption per sample (empty when the kind writes none)."""
        return self._describe(np.arange(self.n))[1]

    @property
    def caption_image_index(self) -> np.ndarray:
        """Caption ``j`` describes sample ``j``."""
        return np.arange(len(self.captions))

    @property
    def images(self) -> SyntheticSplit:
        """The split itself: it is its own image split (the image-text split contract)."""
        return self

    def info(self) -> dict:
        d = super().info()
        d["n_captions"] = self.n
        d["pool_content_hash"] = self.pool.content_hash
        return d


@dataclass
class SyntheticSource(ImageTextSource):
    """A synthetic source: image-text (captions) and labelled (the pool's class names)."""

    kind: str = ""
    params: dict[str, Any] | None = None

    def info(self) -> dict:
        return {"source": self.name, "kind": f"synthetic:{self.kind}", "classes": self.class_names,
                "params": self.params, "splits": {k: v.info() for k, v in self.splits.items()},
                "provenance": self.provenance}


def _validate(kind: SyntheticKind, own: dict[str, Any]) -> None:
    """Let the generator check its parameters now (zero samples over a one-object pool), so a bad
    value fails when the source opens, not at the first batch; other failures wait for real data."""
    try:
        kind.render(np.zeros((1, 8, 8), np.uint8), np.zeros(1, np.int64), np.zeros(0, np.int64), 0, **own)
    except ConfigError:
        raise
    except Exception:  # noqa: BLE001 - a dummy pool may not suit every generator; real data decides
        return


def open_synthetic(spec: str, data_root_dir: str | os.PathLike | None = None) -> SyntheticSource:
    """Open a synthetic source spec (``canvas?objects=mnist&size=64``).

    Args:
        spec: ``KIND`` or ``KIND?key=value&...``; ``objects`` is any labelled source spec.
        data_root_dir: the data root for a named pool.

    Returns:
        A :class:`SyntheticSource` with ``train`` and ``test`` splits.

    Raises:
        ConfigError: unknown kind/parameter, bad value (named).
        DataError: the pool is missing, unlabelled or lacks a train or test split.

    Examples:
        >>> src = open_synthetic("canvas?objects=cifar10_demo&size=32&n_train=4&n_test=2")
        >>> len(src.split("train")), src.split("test").get_batch([0, 1]).shape
        (4, (2, 32, 32, 3))
    """
    from fmlab.data import open_source
    from fmlab.utils.io import sha256_json

    kind, params = parse_synthetic_spec(spec)
    own = {k: v for k, v in params.items() if k not in COMMON_PARAMS}
    _validate(kind, own)
    pool_src = open_source(params["objects"], data_root_dir)
    if getattr(pool_src, "class_names", None) is None:
        raise DataError(f"objects: {params['objects']} has no class labels; a pool needs labelled images")
    splits = {}
    for name, offset in _SPLIT_OFFSET.items():
        if name not in pool_src.splits:
            raise DataError(f"objects: {params['objects']} has no {name!r} split; "
                            f"{name} objects render the {name} split")
        pool = pool_src.split(name)
        pool = pool.images if isinstance(pool, ImageTextSplit) else pool
        seed = 2 * params["seed"] + offset
        h = sha256_json({"kind": kind.name, "version": 1, "split": name, "seed": seed,
                         "n": params[f"n_{name}"], "params": own, "pool": pool.content_hash})
        splits[name] = SyntheticSplit(kind, pool, name, params[f"n_{name}"], seed, own, h, spec)
    return SyntheticSource(spec, splits, f"synthetic {kind.name} over {params['objects']}", {},
                           list(pool_src.class_names), kind.name, params)
