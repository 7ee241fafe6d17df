"""Image-text sources: ``csv:PATH``, ``jsonl:PATH`` and the named ``coco_mini``.

csv/jsonl records carry an image path (column/field ``image``, also ``image_path``/``filepath``/
``file``; relative paths resolve against the file's folder) and a caption (``caption``, also
``text``/``title``); an optional ``split`` field assigns records to splits (default ``train``).
Records sharing an image path become one image with several captions, so retrieval can count a
hit when any of an image's captions is found.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from fmlab.data.hashing import file_hash, split_hash
from fmlab.data.npz import _get, check_image_array, load_npz
from fmlab.data.sources import ArraySplit, FileListSplit, ImageTextSource, ImageTextSplit
from fmlab.errors import DataError

IMAGE_FIELDS = ("image", "image_path", "filepath", "file", "img")
CAPTION_FIELDS = ("caption", "text", "title")


def _pick(record: dict, fields: tuple[str, ...], where: str, what: str) -> str:
    for f in fields:
        if f in record and record[f] not in (None, ""):
            return str(record[f])
    raise DataError(f"{where}: missing {what} field (one of {', '.join(fields)})")


def read_records(path: Path) -> list[dict]:
    """The records of a CSV (header row) or JSONL (one object per line) file.

    Args:
        path: the ``.csv`` or ``.jsonl``/``.json`` file.

    Returns:
        One dict per record.

    Raises:
        fmlab.errors.DataError: missing file, not UTF-8, bad JSON, no records; the message
            names the file (and the line for JSON).
    """
    if not path.is_file():
        raise DataError(f"file not found: {path}")
    try:
        records = _read_csv(path) if path.suffix.lower() == ".csv" else _read_jsonl(path)
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e})") from None
    if not records:
        raise DataError(f"{path}: no records")
    return records


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None:
            raise DataError(f"{path}: empty CSV file (no header)")
        return list(reader)


def _read_jsonl(path: Path) -> list[dict]:
    records: list[dict] = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{i}: invalid JSON ({e.msg})") from None
            if not isinstance(rec, dict):
                raise DataError(f"{path}:{i}: each line must be a JSON object")
            records.append(rec)
    return records


def open_table_source(path: str | Path, name: str | None = None) -> ImageTextSource:
    path = Path(path).expanduser()
    records = read_records(path)
    by_split: dict[str, dict[str, list[str]]] = {}
    for i, rec in enumerate(records, 1):
        where = f"{path}: record {i}"
        img = _pick(rec, IMAGE_FIELDS, where, "image")
        cap = _pick(rec, CAPTION_FIELDS, where, "caption")
        p = Path(img).expanduser()
        p = p if p.is_absolute() else path.parent / p
        by_split.setdefault(str(rec.get("split") or "train"), {}).setdefault(str(p), []).append(cap)
    fsha = file_hash(path)
    splits = {}
    for s, images in by_split.items():
        paths = list(images)
        missing = [p for p in paths if not Path(p).is_file()]
        if missing:
            raise DataError(f"{path}: image file not found: {missing[0]}"
                            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
        caps, idx = [], []
        for j, p in enumerate(paths):
            caps += images[p]
            idx += [j] * len(images[p])
        img_split = FileListSplit(paths, name=s, labels=None, class_names=None,
                                  content_hash=split_hash(fsha, s), origin=str(path))
        splits[s] = ImageTextSplit(img_split, caps, np.asarray(idx, dtype=np.int64))
    return ImageTextSource(name or f"{path.suffix.lstrip('.').lower()}:{path}", splits, "",
                           {"file": str(path), "sha256": fsha})


def open_coco_mini(path: Path) -> ImageTextSource:
    """COCO-mini npz: ``images`` (N,224,224,3), ``captions``, ``caption_image_index``, ``splits``.

    Its ``train2017`` images form the ``train`` split and its ``val2017`` images the ``val`` split
    (also reachable as ``test``: the source has no other held-out part).
    """
    z = load_npz(path)
    images = _get(z, "images", path)
    captions = [str(c) for c in _get(z, "captions", path).tolist()]
    cap_idx = _get(z, "caption_image_index", path).astype(np.int64)
    img_split = np.asarray([str(s) for s in _get(z, "splits", path).tolist()])
    if images.dtype != np.uint8 or images.ndim != 4:
        raise DataError(f"{path}: images must be uint8 (N,H,W,C), got {images.dtype} {images.shape}")
    check_image_array(images, path, "images")
    if len(captions) != len(cap_idx):
        raise DataError(f"{path}: {len(captions)} captions but {len(cap_idx)} caption_image_index entries")
    if len(img_split) != len(images):
        raise DataError(f"{path}: {len(images)} images but {len(img_split)} split entries")
    if cap_idx.size and (cap_idx.min() < 0 or cap_idx.max() >= len(images)):
        raise DataError(f"{path}: caption_image_index points outside 0..{len(images) - 1}")
    fsha = file_hash(path)
    splits = {}
    for ours, theirs in (("train", "train2017"), ("val", "val2017")):
        rows = np.flatnonzero(img_split == theirs)
        remap = -np.ones(len(images), dtype=np.int64)
        remap[rows] = np.arange(len(rows))
        keep = np.flatnonzero(np.isin(cap_idx, rows))
        sub = ArraySplit(images[rows], name=ours, labels=None, class_names=None,
                         content_hash=split_hash(fsha, theirs), origin=str(path))
        splits[ours] = ImageTextSplit(sub, [captions[j] for j in keep], remap[cap_idx[keep]])
    splits["test"] = splits["val"]
    return ImageTextSource("coco_mini", splits,
                           "COCO-2017 captions (CC BY 4.0), 159 images with per-image Flickr licences; "
                           "see coco_mini/PROVENANCE.md",
                           {"file": str(path), "sha256": fsha})
