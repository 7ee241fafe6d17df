"""``fmlab curate filter``: drop the images of a category (PASS-style) from a source.

Reads every split of a source once (aliases such as COCO-mini's ``test`` = ``val`` once),
decides per image from captions, class names and optional classifier scores
(:mod:`fmlab.curate.people`), and writes into ``OUT``:

* ``manifest.jsonl``: one line per image: split, index, sha256 of its pixels, kept, reasons
  (a dropped image always has at least one reason, a kept one none);
* ``summary.json``: counts per split, per reason kind, per keyword / class;
* ``filtered.npz``: the kept images as an ``npz:`` source (``x_<split>``, ``y_<split>`` and
  ``class_names``; images without labels get the single class ``unlabelled``), so ``fmlab pretrain --set data.source=npz:OUT/filtered.npz``
  trains on them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fmlab.curate.people import (
    KeywordMatcher,
    caption_reasons,
    classes_to_drop,
    get_category,
    score_reasons,
)
from fmlab.data.sources import ImageTextSplit
from fmlab.errors import ConfigError, DataError
from fmlab.utils.io import atomic_write, write_json


@dataclass
class FilterConfig:
    """Arguments of :func:`filter_source`.

    Attributes:
        data: source spec (``coco_mini``, ``cifar10``, ``npz:PATH``, ``jsonl:PATH`` ...).
        out: output folder.
        drop: category names (``people``); may be empty when ``drop_classes`` is given.
        drop_classes: further class names to drop (labelled sources), e.g. a proxy category.
        scores: optional classifier scores per split (split -> one score per image).
        threshold: classifier threshold (drop when score >= threshold).
        data_root: folder of the named datasets.
    """

    data: str
    out: Path
    drop: list[str] = field(default_factory=lambda: ["people"])
    drop_classes: list[str] = field(default_factory=list)
    scores: dict[str, np.ndarray] | None = None
    threshold: float = 0.5
    data_root: str | None = None


def _splits(source) -> list[tuple[str, object]]:
    """Distinct splits in the source's order (an alias of an earlier split is skipped)."""
    seen: list[object] = []
    out = []
    for name in source.splits:
        split = source.splits[name]
        if any(split is s for s in seen):
            continue
        seen.append(split)
        out.append((name, split))
    return out


def _image_hash(img: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(img).tobytes()).hexdigest()[:16]


def split_reasons(cfg: FilterConfig, name: str, split, class_names: list[str] | None,
                  n: int) -> list[list[str]]:
    """The reasons to drop each image of one split (empty list: keep)."""
    reasons: list[list[str]] = [[] for _ in range(n)]
    cats = [get_category(c) for c in cfg.drop]
    if isinstance(split, tuple):  # (captions, index)
        for cat in cats:
            for i, r in enumerate(caption_reasons(split[0], split[1], n,
                                                  KeywordMatcher(cat.keywords))):
                reasons[i] += r
    labels = getattr(split, "labels", None) if not isinstance(split, tuple) else split[2]
    if class_names is not None and labels is not None:
        drop: dict[int, str] = {}
        for cat in cats or [None]:
            drop.update(classes_to_drop(class_names, cat, cfg.drop_classes))
        for i, y in enumerate(np.asarray(labels)):
            if int(y) in drop:
                reasons[i].append(drop[int(y)])
    elif cfg.drop_classes:
        raise ConfigError(f"--drop-classes: source {cfg.data!r} split {name!r} has no labels")
    if cfg.scores is not None and name in cfg.scores:
        s = np.asarray(cfg.scores[name])
        if len(s) != n:
            raise DataError(f"classifier scores for split {name!r}: {len(s)} values for {n} images")
        for i, r in enumerate(score_reasons(s, cfg.threshold)):
            reasons[i] += r
    return reasons


def _reason_kind(reason: str) -> str:
    return reason.split(" ", 1)[0]  # caption / class / classifier


def _reason_keys(reason: str) -> list[str]:
    if reason.startswith("caption"):
        return [f"keyword {k}" for k in re.findall(r"'([^']+)'", reason)]
    if reason.startswith("class"):
        return [reason.split(" (", 1)[0]]
    return ["classifier"]


def _filter_split(cfg: FilterConfig, name: str, split, class_names: list[str] | None, f,
                  summary: dict, arrays: dict[str, np.ndarray]) -> None:
    """Decide one split: manifest lines to ``f``, counts into ``summary``, kept arrays."""
    text = isinstance(split, ImageTextSplit)
    images_split = split.images if text else split
    n = len(images_split)
    view = (split.captions, split.caption_image_index, images_split.labels) if text else split
    reasons = split_reasons(cfg, name, view, class_names, n)
    images = images_split.decode(np.arange(n))
    kept = np.array([not r for r in reasons], dtype=bool)
    for i in range(n):
        rec = {"split": name, "index": i, "sha256": _image_hash(images[i]),
               "kept": bool(kept[i]), "reasons": reasons[i]}
        f.write(json.dumps(rec) + "\n")
        for r in reasons[i]:
            summary["by_kind"][_reason_kind(r)] += 1
            summary["by_key"].update(_reason_keys(r))
    summary["splits"][name] = {"images": n, "kept": int(kept.sum()),
                               "dropped": int(n - kept.sum())}
    arrays[f"x_{name}"] = images[kept]
    labels = images_split.labels
    arrays[f"y_{name}"] = (np.zeros(int(kept.sum()), dtype=np.int64) if labels is None
                           else np.asarray(labels)[kept])


def filter_source(cfg: FilterConfig) -> dict:
    """Filter every split of ``cfg.data``; write manifest, summary and the filtered npz.

    Args:
        cfg: what to read, what to drop, where to write.

    Returns:
        The summary (also ``OUT/summary.json``).

    Raises:
        fmlab.errors.ConfigError: nothing to drop by, unknown category, unknown class.
        fmlab.errors.DataError: the source cannot be read.

    Examples:
        >>> import tempfile, os
        >>> out = Path(tempfile.mkdtemp())
        >>> s = filter_source(FilterConfig("cifar10_demo", out, drop=[], drop_classes=["cat"]))
        >>> s["splits"]["test"]["dropped"], s["by_key"]
        (100, {"class 'cat'": 200})
    """
    from fmlab.data import open_source

    if not cfg.drop and not cfg.drop_classes:
        raise ConfigError("nothing to drop: give --drop CATEGORY and/or --drop-classes NAMES")
    for c in cfg.drop:
        get_category(c)  # fail before reading the data
    source = open_source(cfg.data, cfg.data_root)
    class_names = getattr(source, "class_names", None)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    summary: dict = {"data": cfg.data, "drop": cfg.drop, "drop_classes": cfg.drop_classes,
                     "splits": {}, "by_kind": Counter(), "by_key": Counter()}
    with atomic_write(out / "manifest.jsonl", "w") as f:
        for name, split in _splits(source):
            _filter_split(cfg, name, split, class_names, f, summary, arrays)
    # npz: sources need labels; unlabelled images get the one class "unlabelled"
    arrays["class_names"] = np.asarray(class_names if class_names is not None else ["unlabelled"])
    with atomic_write(out / "filtered.npz", "wb") as f:
        np.savez_compressed(f, **arrays)
    summary["by_kind"] = dict(summary["by_kind"].most_common())
    summary["by_key"] = dict(summary["by_key"].most_common())
    write_json(out / "summary.json", summary)
    return summary


def read_manifest(path: str | os.PathLike) -> list[dict]:
    """The records of a ``manifest.jsonl``.

    Examples:
        >>> read_manifest(os.devnull)
        []
    """
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
