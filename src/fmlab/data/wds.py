"""WebDataset tar shards: ``fmlab data shard`` writes them, the ``wds:`` source reads them.

A shard is a plain POSIX tar holding, per sample key ``%08d`` (the row in the source split), the
image as lossless PNG (``KEY.png``: the decoded pixels come back bit for bit), the label
(``KEY.cls``, ASCII) or the caption (``KEY.txt``) and ``KEY.json`` metadata -- the layout the
``webdataset`` package reads. ``manifest.json`` lists every shard with its sample count, size and
sha256 and is written last, atomically, so a folder with a manifest is complete.

Reading: ``wds:DIR`` (a folder with a manifest) or ``wds:PATTERN`` (a glob or brace pattern such
as ``shards/train-{000000..000009}.tar``). The split keeps only an index of tar members (shard,
offset, size per sample: a few bytes each, never the pixels) and reads the members a batch needs
with ``seek``; so the engine's seeded permutation, rank split and resume work unchanged and memory
does not grow with the images. :class:`~fmlab.data.wds_stream.WdsStream` is the sequential,
shard-split reader for iterable pipelines.
"""

from __future__ import annotations

import glob
import io
import json
import os
import tarfile
from pathlib import Path

import numpy as np

from fmlab.data.sources import ImageSource, ImageSplit, ImageTextSource, ImageTextSplit, decode_image
from fmlab.errors import ConfigError, DataError
from fmlab.utils.io import atomic_path, sha256_bytes, sha256_file, write_json

MANIFEST = "manifest.json"
FORMAT = "fmlab-wds-1"
IMAGE_EXTS = ("png", "jpg", "jpeg", "webp", "ppm")


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    """Add one member with fixed owner, mode and mtime: the same inputs give the same bytes."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    tar.addfile(info, io.BytesIO(data))


def write_shards(split: ImageSplit | ImageTextSplit, out: str | os.PathLike, *,
                 shard_size: int = 10000, prefix: str | None = None,
                 source: str = "", batch_size: int = 256) -> dict:
    """Write ``split`` as tar shards of ``shard_size`` samples plus ``manifest.json`` in ``out``.

    Args:
        split: the images (and labels), or an image-text split (captions go to ``KEY.txt``).
        out: the output folder (created; existing shards of the same names are replaced).
        shard_size: samples per shard (>= 1).
        prefix: shard file name prefix (default: the split name).
        source: the source spec, recorded in the manifest.
        batch_size: images decoded at a time (memory holds one batch and one shard's writer).

    Returns:
        The manifest dict.

    Examples:
        >>> import tempfile
        >>> from fmlab.data import open_source
        >>> from fmlab.data.sources import SubsetSplit
        >>> sub = SubsetSplit(open_source("cifar10_demo").split("test"), np.arange(5))
        >>> m = write_shards(sub, tempfile.mkdtemp(), shard_size=2)
        >>> m["n"], [s["n"] for s in m["shards"]]
        (5, [2, 2, 1])
    """
    if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
        raise ConfigError(f"--shard-size must be an integer >= 1, got {shard_size!r}")
    images = split.images if isinstance(split, ImageTextSplit) else split
    captions = _captions_by_image(split) if isinstance(split, ImageTextSplit) else None
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    prefix = prefix or images.name
    n, shards = len(images), []
    if n == 0:
        raise DataError(f"split {images.name!r} of {images.origin} is empty: nothing to shard")
    for k, start in enumerate(range(0, n, shard_size)):
        name = f"{prefix}-{k:06d}.tar"
        idx = np.arange(start, min(start + shard_size, n))
        with atomic_path(out / name) as tmp:
            with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
                for b in range(0, len(idx), batch_size):
                    _write_batch(tar, images, idx[b:b + batch_size], captions)
        shards.append({"name": name, "n": len(idx), "bytes": (out / name).stat().st_size,
                       "sha256": sha256_file(out / name)})
    manifest = {"format": FORMAT, "source": source, "split": images.name, "n": n,
                "class_names": images.class_names, "image_shape": list(images.image_shape),
                "source_content_hash": images.content_hash, "shards": shards}
    write_json(out / MANIFEST, manifest)
    return manifest


def _captions_by_image(split: ImageTextSplit) -> list[list[str]]:
    by_image: list[list[str]] = [[] for _ in range(len(split.images))]
    for cap, i in zip(split.captions, split.caption_image_index.tolist()):
        by_image[i].append(cap)
    return by_image


def _write_batch(tar: tarfile.TarFile, images: ImageSplit, idx: np.ndarray,
                 captions: list[list[str]] | None) -> None:
    pixels = images.get_batch(idx)
    for i, im in zip(idx.tolist(), pixels):
        key = f"{i:08d}"
        meta: dict = {"index": i}
        _member(tar, f"{key}.png", _png(im))
        if images.labels is not None:
            label = int(images.labels[i])
            meta["label"] = label
            if images.class_names:
                meta["class"] = images.class_names[label]
            _member(tar, f"{key}.cls", str(label).encode())
        if captions is not None:
            meta["captions"] = captions[i]
            _member(tar, f"{key}.txt", (captions[i][0] if captions[i] else "").encode())
        _member(tar, f"{key}.json", json.dumps(meta, ensure_ascii=False).encode())


# ------------------------------------------------------------------------------------- reading


def expand_pattern(pattern: str) -> list[Path]:
    """Shard files of a ``wds:`` spec: a folder's manifest order, or a sorted glob/brace match.

    Raises:
        fmlab.errors.DataError: nothing matches (the message names the pattern).
    """
    p = Path(pattern).expanduser()
    if p.is_dir():
        if (p / MANIFEST).is_file():
            return [p / s["name"] for s in read_manifest(p)["shards"]]
        files = sorted(p.glob("*.tar"))
    else:
        files = sorted({Path(f) for pat in _braces(str(p)) for f in glob.glob(pat)})
    files = [f for f in files if f.is_file()]
    if not files:
        raise DataError(f"wds:{pattern}: no shard file matches this pattern")
    return files


def _braces(pattern: str) -> list[str]:
    """``a-{000..002}.tar`` -> three names (the ``webdataset`` brace syntax, via braceexpand)."""
    if "{" not in pattern:
        return [pattern]
    try:
        from braceexpand import braceexpand
    except ImportError:
        raise ConfigError("brace patterns in wds: specs need the [data] extra: "
                          "pip install -e \".[data]\" (or use a folder or a glob)") from None
    return list(braceexpand(pattern))


def read_manifest(folder: Path) -> dict:
    """The manifest of a shard folder, checked for the keys the reader uses."""
    path = folder / MANIFEST
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
        assert isinstance(m, dict) and m.get("format") == FORMAT and isinstance(m["shards"], list)
        for s in m["shards"]:
            assert isinstance(s["name"], str) and "/" not in s["name"]
    except (ValueError, KeyError, TypeError, AssertionError) as e:
        raise DataError(f"{path}: not an fmlab WebDataset manifest ({e or 'bad format'})") from None
    return m


def index_shard(path: Path) -> dict[str, dict[str, tuple[int, int]]]:
    """``key -> {ext: (offset, size)}`` of one tar, reading only its 512-byte headers.

    Plain ustar headers are parsed here (about 20x faster than ``tarfile`` on 150k members); an
    archive with pax or GNU long-name headers goes through ``tarfile``.

    Raises:
        fmlab.errors.DataError: a damaged tar header or a member past the end of the file.
    """
    samples: dict[str, dict[str, tuple[int, int]]] = {}
    size = path.stat().st_size
    with open(path, "rb") as fh:
        pos = 0
        while pos + 512 <= size:
            fh.seek(pos)
            block = fh.read(512)
            if not block.strip(b"\0"):  # end-of-archive blocks: only zeros may follow
                check_tail(path, pos)
                return samples
            if block[156:157] in (b"x", b"g", b"L", b"K"):
                return _index_with_tarfile(path, size)
            n = _header_size(path, block, pos)
            name = block[:100].rstrip(b"\0").decode("utf-8", "replace")
            prefix = block[345:500].rstrip(b"\0").decode("utf-8", "replace")
            if block[156:157] in (b"0", b"\0"):
                if pos + 512 + n > size:
                    raise DataError(f"{path}: member {name} is truncated (the shard is damaged)")
                key, _, ext = (f"{prefix}/{name}" if prefix else name).rpartition("/")[2].partition(".")
                samples.setdefault(key, {})[ext.lower()] = (pos + 512, n)
            pos += 512 + (n + 511) // 512 * 512
    if pos != size:
        raise DataError(f"{path}: corrupt tar shard (truncated header at byte {pos})")
    return samples


def _header_size(path: Path, block: bytes, pos: int) -> int:
    """The member size of a ustar header, after checking its checksum."""
    try:
        stored = int(block[148:156].replace(b"\0", b" ").strip() or b"-1", 8)
        n = int(block[124:136].replace(b"\0", b" ").strip() or b"0", 8)
    except ValueError:
        stored, n = -1, 0
    if stored != sum(block[:148]) + 256 + sum(block[156:]):
        raise DataError(f"{path}: corrupt tar shard (bad member header at byte {pos}; the samples "
                        "from there on cannot be read)")
    return n


def _index_with_tarfile(path: Path, size: int) -> dict[str, dict[str, tuple[int, int]]]:
    samples: dict[str, dict[str, tuple[int, int]]] = {}
    try:
        with tarfile.open(path, "r:") as tar:
            for m in tar:
                if not m.isfile():
                    continue
                if m.offset_data + m.size > size:
                    raise DataError(f"{path}: member {m.name} is truncated (the shard is damaged)")
                key, _, ext = m.name.rpartition("/")[2].partition(".")
                samples.setdefault(key, {})[ext.lower()] = (m.offset_data, m.size)
            check_tail(path, tar.offset)
    except tarfile.TarError as e:
        raise DataError(f"{path}: corrupt tar shard ({e})") from None
    return samples


def check_tail(path: Path, offset: int) -> None:
    """After the last member tarfile could read, only zero blocks may follow.

    ``tarfile`` takes a damaged header in the middle of an archive for its end and stops
    silently; the samples after it would vanish without a word. This turns that into an error.
    """
    with open(path, "rb") as fh:
        fh.seek(offset)
        while chunk := fh.read(1 << 16):
            if chunk.strip(b"\0"):
                raise DataError(f"{path}: corrupt tar shard (unreadable member header at byte "
                                f"{offset}; the samples after it cannot be read)")


class WdsSplit(ImageSplit):
    """Samples of tar shards, decoded per batch from ``(shard, offset, size)`` of each image."""

    streams = True  # training reads it batch by batch (fmlab.engine.data.SplitSource)

    def __init__(self, files: list[Path], name: str, class_names: list[str] | None,
                 content_hash: str, origin: str, mode: str = "RGB") -> None:
        shard_of, offsets, sizes, labels, keys, self.text = [], [], [], [], [], []
        for s, f in enumerate(files):
            with open(f, "rb") as fh:  # one handle per shard for the small label members
                for key, members in index_shard(f).items():
                    ext = next((e for e in IMAGE_EXTS if e in members), None)
                    if ext is None:
                        raise DataError(f"{f}: sample {key} has no image member ({', '.join(IMAGE_EXTS)})")
                    shard_of.append(s)
                    offsets.append(members[ext][0])
                    sizes.append(members[ext][1])
                    labels.append(_read_label(fh, f, key, members.get("cls")))
                    keys.append(key)
                    if "txt" in members:  # captions: all of them from the JSON, else the .txt
                        self.text.append((s, members.get("json"), members["txt"]))
        has = [x is not None for x in labels]
        if any(has) and not all(has):
            raise DataError(f"{origin}: some samples have a .cls label and some do not")
        lab = np.asarray(labels, dtype=np.int64) if labels and all(has) else None
        if lab is not None and class_names is None:
            class_names = [str(c) for c in range(int(lab.max()) + 1)]
        super().__init__(name, lab, class_names, content_hash, origin)
        self.files, self.mode, self.keys = list(files), mode, keys
        self.shard_of = np.asarray(shard_of, dtype=np.int32)
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.sizes = np.asarray(sizes, dtype=np.int64)

    def __len__(self) -> int:
        return int(self.offsets.size)

    def _decode(self, idx: np.ndarray) -> np.ndarray:
        from fmlab.data.sources import _stack

        out = []
        for i in idx.tolist():
            f = self.files[self.shard_of[i]]
            with open(f, "rb") as fh:
                fh.seek(int(self.offsets[i]))
                data = fh.read(int(self.sizes[i]))
            out.append(decode_image(data, self.mode, f"{f}: member {self.keys[i]} (image)"))
        return _stack(out, self.origin, self.name)


def _read(shard: Path, where: tuple[int, int]) -> bytes:
    with open(shard, "rb") as fh:
        fh.seek(where[0])
        return fh.read(where[1])


def _captions(split: WdsSplit) -> ImageTextSplit:
    """The image-text view of a split whose samples carry captions (``KEY.txt``)."""
    if len(split.text) != len(split):
        raise DataError(f"{split.origin}: some samples have a .txt caption and some do not")
    captions, owner = [], []
    for i, (s, js, txt) in enumerate(split.text):
        f = split.files[s]
        try:
            caps = json.loads(_read(f, js)).get("captions") if js else None
            caps = caps if isinstance(caps, list) and caps else [_read(f, txt).decode("utf-8")]
        except (ValueError, AttributeError) as e:
            raise DataError(f"{f}: member {split.keys[i]}: bad caption metadata ({e})") from None
        captions += [str(c) for c in caps]
        owner += [i] * len(caps)
    return ImageTextSplit(split, captions, np.asarray(owner, dtype=np.int64))


def _read_label(fh, shard: Path, key: str, where: tuple[int, int] | None) -> int | None:
    if where is None:
        return None
    fh.seek(where[0])
    raw = fh.read(where[1])
    try:
        return int(raw.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        raise DataError(f"{shard}: member {key}.cls is not an integer label ({raw[:20]!r})") from None


def open_wds_source(pattern: str) -> ImageSource:
    """The ``wds:`` source: one split (the manifest's split name, else ``train``).

    Args:
        pattern: a shard folder (with or without ``manifest.json``) or a glob/brace pattern.

    Returns:
        An :class:`ImageSource` whose split reads the shards lazily.
    """
    files = expand_pattern(pattern)
    folder = Path(pattern).expanduser()
    manifest = read_manifest(folder) if (folder / MANIFEST).is_file() else None
    if manifest is not None:
        for s in manifest["shards"]:
            f = folder / s["name"]
            if f.stat().st_size != s.get("bytes", f.stat().st_size):
                raise DataError(f"{f}: {f.stat().st_size} bytes, the manifest says {s['bytes']}")
        digest = sha256_bytes(json.dumps([s.get("sha256") for s in manifest["shards"]]).encode())
        split_name, classes = manifest.get("split") or "train", manifest.get("class_names")
    else:  # a pattern: hash the bytes; names from a manifest beside the shards, if any
        digest = sha256_bytes("".join(sha256_file(f) for f in files).encode())
        beside = files[0].parent
        m = read_manifest(beside) if (beside / MANIFEST).is_file() else {}
        split_name, classes = m.get("split") or "train", m.get("class_names")
    split = WdsSplit(files, split_name, classes, digest, f"wds:{pattern}")
    if split.text:  # sharded image-text pairs come back as an image-text source
        return ImageTextSource(f"wds:{pattern}", {split_name: _captions(split)},
                               provenance=(manifest or {}).get("source", ""),
                               metadata={"shards": len(files)}, class_names=split.class_names)
    return ImageSource(f"wds:{pattern}", {split_name: split}, split.class_names,
                       provenance=(manifest or {}).get("source", ""),
                       metadata={"shards": len(files)})
