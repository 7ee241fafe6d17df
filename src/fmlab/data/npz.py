"""``npz:PATH`` sources.

Keys per split ``s``: ``x_s`` (uint8, ``(N,H,W)`` or ``(N,H,W,C)``) or encoded images
``x_s_jpeg`` (uint8 bytes) + ``x_s_jpeg_offsets`` (int64, N+1); labels ``y_s``; optional
``class_names``. When both decoded and encoded images exist, the decoded array is used.

Every array's ``.npy`` header is read before the array is: an array larger than
:func:`max_array_bytes` (``$FMLAB_MAX_ARRAY_BYTES``; default half the RAM, at most 16 GiB), a
header that disagrees with the zip entry's size, or a large member that decompresses more than
:data:`MAX_COMPRESSION_RATIO` times (a zip bomb: zeros deflate about 1000:1, images under 10:1)
is refused with an error naming the file, the array and the size, before any memory is taken.
"""

from __future__ import annotations

import math
import os
import re
import zipfile
from pathlib import Path

import numpy as np

from fmlab.data.hashing import file_hash, split_hash
from fmlab.data.sources import ArraySplit, EncodedSplit, ImageSource, ImageSplit, check_labels
from fmlab.errors import ConfigError, DataError

MAX_COMPRESSION_RATIO = 200  # $FMLAB_NPZ_MAX_RATIO overrides
RATIO_MIN_BYTES = 256 << 20  # below this a high compression ratio is harmless
_SPLIT_KEY = re.compile(r"^x_(?P<split>[A-Za-z0-9]+?)(?P<enc>_jpeg)?$")


def _env_number(name: str, default: int) -> int:
    text = os.environ.get(name)
    if not text:
        return default
    try:
        value = int(float(text))
    except ValueError:
        raise ConfigError(f"${name}: {text!r} is not a number") from None
    if value < 1:
        raise ConfigError(f"${name}: {text!r} must be >= 1")
    return value


def max_array_bytes() -> int:
    """The largest array (in bytes) an npz source may load: ``$FMLAB_MAX_ARRAY_BYTES``, else half
    the machine's RAM, at most 16 GiB.

    Returns:
        The limit in bytes.

    Examples:
        >>> 0 < max_array_bytes() <= 16 << 30
        True
    """
    default = 16 << 30
    try:
        default = min(default, os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2)
    except (ValueError, OSError, AttributeError):  # not available on this platform
        pass
    return _env_number("FMLAB_MAX_ARRAY_BYTES", default)


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def check_array_member(z: np.lib.npyio.NpzFile, key: str, path: Path) -> None:
    """Refuse array ``key`` of ``z`` from its header alone when loading it would be unsafe.

    Args:
        z: an open npz file.
        key: the array's key.
        path: the file, for messages.

    Raises:
        fmlab.errors.DataError: the array is over :func:`max_array_bytes`, its header and the
            zip entry disagree on its size, or it decompresses suspiciously much.
    """
    member = f"{key}.npy" if f"{key}.npy" in z.zip.namelist() else key
    info = z.zip.getinfo(member)
    try:
        with z.zip.open(member) as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                shape, _, dtype = np.lib.format._read_array_header(f, version)
            header_len = f.tell()
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: key {key!r} is not a readable .npy array ({e})") from None
    if dtype.hasobject:
        return  # refused later: object arrays need pickle
    nbytes = math.prod(int(d) for d in shape) * dtype.itemsize
    limit = max_array_bytes()
    if nbytes > limit:
        raise DataError(f"{path}: array {key!r} of shape {tuple(shape)} {dtype} needs {_size(nbytes)}, over "
                        f"the limit of {_size(limit)} (set $FMLAB_MAX_ARRAY_BYTES to raise it)")
    if info.file_size != header_len + nbytes:
        raise DataError(f"{path}: array {key!r}: its header claims {_size(nbytes)} of data but the zip "
                        f"entry holds {_size(max(0, info.file_size - header_len))}")
    ratio = _env_number("FMLAB_NPZ_MAX_RATIO", MAX_COMPRESSION_RATIO)
    if info.file_size > RATIO_MIN_BYTES and info.file_size > ratio * max(1, info.compress_size):
        raise DataError(f"{path}: array {key!r} decompresses from {_size(info.compress_size)} to "
                        f"{_size(info.file_size)} (more than {ratio}:1): refusing a likely zip bomb "
                        "(set $FMLAB_NPZ_MAX_RATIO to allow it)")


def check_image_array(x: np.ndarray, path: Path, key: str) -> None:
    """Decoded images must be uint8 ``(N,H,W)`` or ``(N,H,W,C)``, C in 1/3, with H, W >= 1.

    Raises:
        fmlab.errors.DataError: naming the file, the key and the dtype or shape.
    """
    if x.dtype != np.uint8:
        raise DataError(f"{path}: {key} must be uint8 images, got dtype {x.dtype}")
    if x.ndim not in (3, 4) or (x.ndim == 4 and x.shape[-1] not in (1, 3)):
        raise DataError(f"{path}: {key} must have shape (N,H,W) or (N,H,W,C) with C in 1/3, "
                        f"got {x.shape}")
    if x.shape[1] < 1 or x.shape[2] < 1:
        raise DataError(f"{path}: {key} has images of size {x.shape[1]}x{x.shape[2]}; height and width "
                        "must be >= 1")


def load_npz(path: str | Path) -> np.lib.npyio.NpzFile:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"file not found: {path}")
    try:
        return np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise DataError(f"{path}: not a readable .npz file ({e})") from None


def _get(z: np.lib.npyio.NpzFile, key: str, path: Path) -> np.ndarray:
    if key not in z.files:
        raise DataError(f"{path}: missing key {key!r} (keys: {', '.join(sorted(z.files))})")
    check_array_member(z, key, path)
    try:
        return z[key]
    except ValueError as e:  # object arrays need pickle, which we refuse
        raise DataError(f"{path}: key {key!r} cannot be read without pickle ({e})") from None
    except MemoryError:
        raise DataError(f"{path}: array {key!r} does not fit in memory") from None


def open_npz_source(path: str | Path, name: str | None = None, provenance: str = "",
                    metadata: dict | None = None) -> ImageSource:
    """An ``npz:PATH`` source: one split per ``x_<split>`` (or ``x_<split>_jpeg``) key.

    Args:
        path: the ``.npz`` file.
        name: the source's name (default ``npz:PATH``).
        provenance: where the data comes from (shown by ``fmlab data info``).
        metadata: extra facts for :meth:`ImageSource.info`.

    Returns:
        The :class:`~fmlab.data.sources.ImageSource`.

    Raises:
        fmlab.errors.DataError: missing, unreadable or inconsistent file; arrays too large.
    """
    path = Path(path).expanduser()
    z = load_npz(path)
    splits_found: dict[str, set[str]] = {}
    for k in z.files:
        m = _SPLIT_KEY.match(k)
        if m and not k.endswith("_offsets"):
            splits_found.setdefault(m["split"], set()).add("jpeg" if m["enc"] else "array")
    if not splits_found:
        raise DataError(
            f"{path}: no image keys found; expected x_train/y_train (uint8 images) or "
            f"x_train_jpeg + x_train_jpeg_offsets (keys: {', '.join(sorted(z.files))})"
        )
    class_names = None
    if "class_names" in z.files:
        class_names = [str(c) for c in _get(z, "class_names", path).tolist()]
    fsha = file_hash(path)
    labels_by_split = {s: _get(z, f"y_{s}", path) for s in splits_found}
    if class_names is None:
        top = max((int(y.max()) for y in labels_by_split.values() if y.size), default=-1)
        class_names = [str(i) for i in range(top + 1)]
    splits: dict[str, ImageSplit] = {}
    for s, kinds in sorted(splits_found.items()):
        labels = check_labels(labels_by_split[s], len(class_names), str(path), f"y_{s}")
        common = dict(name=s, labels=labels, class_names=class_names,
                      content_hash=split_hash(fsha, s), origin=str(path))
        if "array" in kinds:
            x = _get(z, f"x_{s}", path)
            check_image_array(x, path, f"x_{s}")
            n = x.shape[0]
            split: ImageSplit = ArraySplit(x, **common)
        else:
            buf = _get(z, f"x_{s}_jpeg", path)
            off = _get(z, f"x_{s}_jpeg_offsets", path).astype(np.int64)
            if buf.dtype != np.uint8 or buf.ndim != 1:
                raise DataError(f"{path}: x_{s}_jpeg must be a 1-D uint8 byte buffer")
            if off.ndim != 1 or off.size < 1 or off[0] != 0 or off[-1] != buf.size or np.any(np.diff(off) < 0):
                raise DataError(
                    f"{path}: x_{s}_jpeg_offsets must start at 0, never decrease and end at the buffer "
                    f"length {buf.size}"
                )
            n = off.size - 1
            split = EncodedSplit(buf, off, **common)
        if n != labels.shape[0]:
            raise DataError(f"{path}: split {s!r} has {n} images but y_{s} has {labels.shape[0]} labels")
        splits[s] = split
    return ImageSource(name or f"npz:{path}", splits, class_names, provenance,
                       {"file": str(path), "sha256": fsha, **(metadata or {})})
