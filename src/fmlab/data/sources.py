"""Image sources and their splits: the one shape every dataset takes inside fmlab.

An :class:`ImageSplit` is a labelled list of images that decodes on demand, in batches, as uint8
``(N, H, W)`` or ``(N, H, W, C)`` arrays, so a large source never has to sit decoded in memory.
Its ``content_hash`` identifies the bytes it was read from (plus the split name), which is what
feature caches and results record.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from fmlab.errors import DataError


class ImageSplit:
    """A split of an image source. Subclasses implement :meth:`_decode`."""

    def __init__(
        self,
        name: str,
        labels: np.ndarray | None,
        class_names: Sequence[str] | None,
        content_hash: str,
        origin: str,
    ) -> None:
        self.name = name
        self.labels = None if labels is None else np.asarray(labels, dtype=np.int64)
        self.class_names = list(class_names) if class_names is not None else None
        self.content_hash = content_hash
        self.origin = origin  # file or folder the split was read from, for error messages

    def __len__(self) -> int:  # pragma: no cover - subclasses
        raise NotImplementedError

    @property
    def num_classes(self) -> int | None:
        return None if self.class_names is None else len(self.class_names)

    def get_batch(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """uint8 images at ``indices`` stacked into one array."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = len(self)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise DataError(f"{self.origin}: index out of range for split {self.name!r} of {n} images")
        return self._decode(idx % n if idx.size else idx)

    def _decode(self, idx: np.ndarray) -> np.ndarray:  # pragma: no cover - subclasses
        raise NotImplementedError

    def decode(self, indices: Sequence[int] | np.ndarray, chunk: int = 4096) -> np.ndarray:
        """All images at ``indices`` in one array, decoded ``chunk`` at a time.

        For workflows that hold a (sub)split in memory (pre-training, fine-tuning): decoding in
        chunks keeps the JPEG decoder's temporary buffers small.

        Args:
            indices: rows of the split, in the order wanted.
            chunk: images decoded per call of :meth:`get_batch`.

        Returns:
            uint8 array ``(len(indices), H, W[, C])``.
        """
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        parts = [self.get_batch(idx[i:i + chunk]) for i in range(0, len(idx), chunk)]
        return np.ascontiguousarray(np.concatenate(parts)) if parts else self.get_batch(idx)

    def iter_batches(
        self, batch_size: int = 256, indices: Sequence[int] | np.ndarray | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(indices, images)`` in order; memory holds one batch of decoded images."""
        idx = np.arange(len(self)) if indices is None else np.asarray(indices, dtype=np.int64)
        for start in range(0, len(idx), batch_size):
            chunk = idx[start:start + batch_size]
            yield chunk, self.get_batch(chunk)

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.get_batch([0]).shape[1:]) if len(self) else ()

    def info(self) -> dict:
        d = {"split": self.name, "n": len(self), "image_shape": list(self.image_shape),
             "content_hash": self.content_hash}
        if self.labels is not None and self.class_names is not None:
            d["per_class"] = np.bincount(self.labels, minlength=len(self.class_names)).tolist()
        return d


class ArraySplit(ImageSplit):
    """Images already decoded in one uint8 array (MNIST, the decoded CIFAR test set, user npz)."""

    def __init__(self, images: np.ndarray, **kw) -> None:
        super().__init__(**kw)
        self.images = images

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def _decode(self, idx: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(self.images[idx])


class EncodedSplit(ImageSplit):
    """Encoded images (JPEG/PNG bytes) in one buffer with ``N+1`` offsets, decoded per batch."""

    def __init__(self, buffer: np.ndarray, offsets: np.ndarray, mode: str = "RGB", **kw) -> None:
        super().__init__(**kw)
        self.buffer = buffer
        self.offsets = offsets
        self.mode = mode

    def __len__(self) -> int:
        return int(self.offsets.shape[0] - 1)

    def _decode(self, idx: np.ndarray) -> np.ndarray:
        out = [decode_image(self.buffer[self.offsets[i]:self.offsets[i + 1]].tobytes(), self.mode,
                            f"{self.origin}: image {int(i)} of split {self.name!r}") for i in idx]
        return _stack(out, self.origin, self.name)


class FileListSplit(ImageSplit):
    """Image files on disk (folder sources, csv/jsonl image-text sources), decoded per batch."""

    def __init__(self, paths: Sequence[str], mode: str = "RGB", **kw) -> None:
        super().__init__(**kw)
        self.paths = list(paths)
        self.mode = mode

    def __len__(self) -> int:
        return len(self.paths)

    def _decode(self, idx: np.ndarray) -> np.ndarray:
        out = []
        for i in idx:
            p = self.paths[i]
            try:
                with open(p, "rb") as f:
                    data = f.read()
            except OSError as e:
                raise DataError(f"cannot read image file {p}: {e.strerror or e}") from None
            out.append(decode_image(data, self.mode, f"image file {p}"))
        return _stack(out, self.origin, self.name)


class SubsetSplit(ImageSplit):
    """The images of ``parent`` at ``indices`` (in that order), decoded on demand.

    Its content hash covers the parent's and the indices, so features of a subset cache apart
    from features of the whole split.
    """

    def __init__(self, parent: ImageSplit, indices: np.ndarray) -> None:
        from fmlab.utils.io import sha256_bytes

        idx = np.asarray(indices, dtype=np.int64)
        super().__init__(
            name=parent.name,
            labels=None if parent.labels is None else parent.labels[idx],
            class_names=parent.class_names,
            content_hash=sha256_bytes(parent.content_hash.encode() + idx.astype("<i8").tobytes()),
            origin=parent.origin,
        )
        self.parent = parent
        self.indices = idx

    def __len__(self) -> int:
        return int(self.indices.size)

    def _decode(self, idx: np.ndarray) -> np.ndarray:
        return self.parent.get_batch(self.indices[idx])


def decode_image(data: bytes, mode: str, what: str) -> np.ndarray:
    """Decode one encoded image; ``what`` names it in errors.

    A decompression bomb (a header claiming more pixels than PIL's ``MAX_IMAGE_PIXELS``, which
    PIL only warns about up to twice that) and an image with no pixels are refused as DataError.
    """
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                arr = np.asarray(im.convert(mode))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise DataError(f"{what} is refused as a decompression bomb: {e}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise DataError(f"{what} cannot be decoded: {e}") from None
    if arr.ndim < 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise DataError(f"{what} has no pixels (shape {arr.shape}); height and width must be >= 1")
    return arr


def _stack(images: list[np.ndarray], origin: str, split: str) -> np.ndarray:
    if not images:
        return np.zeros((0, 0, 0, 3), dtype=np.uint8)
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise DataError(
            f"{origin}: images of split {split!r} differ in size {sorted(shapes)[:3]}; "
            "resize them to one size first (fmlab batches need one shape per split)"
        )
    return np.stack(images)


@dataclass
class ImageSource:
    """A named collection of image splits (``train``/``test``/...) with its provenance."""

    name: str
    splits: dict[str, ImageSplit]
    class_names: list[str] | None
    provenance: str = ""
    metadata: dict = field(default_factory=dict)

    def split(self, name: str) -> ImageSplit:
        if name not in self.splits:
            raise DataError(f"source {self.name!r} has no split {name!r}; it has {sorted(self.splits)}")
        return self.splits[name]

    def info(self) -> dict:
        return {
            "source": self.name,
            "classes": self.class_names,
            "splits": {k: v.info() for k, v in self.splits.items()},
            "provenance": self.provenance,
            **self.metadata,
        }


@dataclass
class ImageTextSplit:
    """Images plus captions; ``caption_image_index[j]`` is the image row of caption ``j``."""

    images: ImageSplit
    captions: list[str]
    caption_image_index: np.ndarray

    def __len__(self) -> int:
        return len(self.images)

    def info(self) -> dict:
        d = self.images.info()
        d["n_captions"] = len(self.captions)
        return d


@dataclass
class ImageTextSource:
    """A source of image–caption pairs (``coco_mini``, ``csv:PATH``, ``jsonl:PATH``).

    Attributes:
        name: the source spec.
        splits: split name -> :class:`ImageTextSplit` (images plus their captions).
        provenance: where the data comes from (licence, URL), for ``fmlab data info``.
        metadata: further facts (``variant``, ``warning``) that results carry along.
        class_names: class names when the images are also labelled, else None.
    """

    name: str
    splits: dict[str, ImageTextSplit]
    provenance: str = ""
    metadata: dict = field(default_factory=dict)
    class_names: list[str] | None = None

    def split(self, name: str) -> ImageTextSplit:
        if name not in self.splits:
            raise DataError(f"source {self.name!r} has no split {name!r}; it has {sorted(self.splits)}")
        return self.splits[name]

    def info(self) -> dict:
        return {"source": self.name, "kind": "image-text",
                "splits": {k: v.info() for k, v in self.splits.items()},
                "provenance": self.provenance, **self.metadata}


def check_labels(labels: np.ndarray, n_classes: int, origin: str, key: str) -> np.ndarray:
    """Labels must be integers in ``0..n_classes-1``; the error names the file, key and value."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise DataError(f"{origin}: {key} must be 1-D, got shape {labels.shape}")
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{origin}: {key} must hold integer labels, got dtype {labels.dtype}")
    if labels.size:
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= n_classes:
            bad = lo if lo < 0 else hi
            raise DataError(
                f"{origin}: {key} has label {bad} outside 0..{n_classes - 1} "
                f"({n_classes} classes)"
            )
    return labels.astype(np.int64)
