"""Download the official MNIST and CIFAR-10 archives, check their sha256, convert to fmlab npz.

Runs only when a user asks (``fmlab data download NAME``); nothing else in fmlab touches the
network, and no test calls these functions with a real URL. Files land in the data root, written
atomically, so an interrupted download leaves nothing half-written.
"""

from __future__ import annotations

import gzip
import io
import pickle  # noqa: S403 - used only through _restricted_unpickle below
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fmlab.errors import DataError
from fmlab.utils.io import atomic_path, sha256_bytes


@dataclass(frozen=True)
class Archive:
    """One downloadable file: its name, the sha256 it must have, and the mirrors to try in order.

    Attributes:
        filename: the archive's file name (in messages).
        sha256: the expected hex digest; any other content is refused.
        urls: mirrors, tried in order.
    """

    filename: str
    sha256: str
    urls: tuple[str, ...]


MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/",
                 "https://storage.googleapis.com/cvdf-datasets/mnist/")
MNIST_FILES = {
    "train_images": ("train-images-idx3-ubyte.gz", "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
    "train_labels": ("train-labels-idx1-ubyte.gz", "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
    "test_images": ("t10k-images-idx3-ubyte.gz", "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
    "test_labels": ("t10k-labels-idx1-ubyte.gz", "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
}
CIFAR10 = Archive("cifar-10-python.tar.gz",
                  "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
                  ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",))
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def fetch(archive: Archive, timeout: float = 60.0, opener=urllib.request.urlopen) -> bytes:
    """Bytes of ``archive`` from the first URL that answers with the right sha256.

    Args:
        archive: what to fetch.
        timeout: seconds per URL.
        opener: ``urllib.request.urlopen`` or a stand-in (tests pass one; nothing in the test
            suite touches the network).

    Returns:
        The archive's bytes, checked.

    Raises:
        DataError: no URL answered with the right content (every URL's failure is listed).

    Examples:
        >>> import contextlib, io
        >>> from fmlab.utils.io import sha256_bytes
        >>> served = b"hello"
        >>> opener = lambda url, timeout: contextlib.closing(io.BytesIO(served))
        >>> fetch(Archive("h.txt", sha256_bytes(b"hello"), ("mirror://a",)), opener=opener)
        b'hello'
        >>> served = b"tampered"
        >>> fetch(Archive("h.txt", sha256_bytes(b"hello"), ("mirror://a",)), opener=opener)
        Traceback (most recent call last):
        ...
        fmlab.errors.DataError: could not download h.txt: mirror://a: sha256 ... != expected ...
    """
    errors = []
    for url in archive.urls:
        try:
            with opener(url, timeout=timeout) as r:
                data = r.read()
        except OSError as e:
            errors.append(f"{url}: {e}")
            continue
        digest = sha256_bytes(data)
        if digest != archive.sha256:
            errors.append(f"{url}: sha256 {digest} != expected {archive.sha256}")
            continue
        return data
    raise DataError(f"could not download {archive.filename}: " + "; ".join(errors))


def parse_idx(data: bytes, what: str) -> np.ndarray:
    """Decode an IDX file (the MNIST format): magic, dims, then uint8 data.

    Args:
        data: the (decompressed) file content.
        what: the file name, for error messages.

    Returns:
        A uint8 array of the shape the header gives.

    Raises:
        DataError: not an unsigned-byte IDX file, or a size that does not match the header.

    Examples:
        >>> header = bytes([0, 0, 0x08, 2]) + (2).to_bytes(4, "big") + (3).to_bytes(4, "big")
        >>> parse_idx(header + bytes(range(6)), "toy.idx")
        array([[0, 1, 2],
               [3, 4, 5]], dtype=uint8)
    """
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(f"{what}: not an unsigned-byte IDX file")
    ndim = data[3]
    dims = np.frombuffer(data, dtype=">u4", count=ndim, offset=4).astype(np.int64)
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DataError(f"{what}: IDX header promises {tuple(dims)} but holds {body.size} bytes")
    return body.reshape(tuple(dims))


def convert_mnist(raw: dict[str, bytes]) -> dict[str, np.ndarray]:
    """The four gzipped MNIST IDX files (keys of :data:`MNIST_FILES`) as fmlab npz arrays.

    Args:
        raw: ``{"train_images": gz bytes, "train_labels": ..., "test_images": ...,
            "test_labels": ...}``.

    Returns:
        ``x_train``, ``y_train``, ``x_test``, ``y_test`` (uint8) and ``class_names`` ("0".."9").
    """
    arrays = {k: parse_idx(gzip.decompress(v), MNIST_FILES[k][0]) for k, v in raw.items()}
    return {
        "x_train": arrays["train_images"], "y_train": arrays["train_labels"],
        "x_test": arrays["test_images"], "y_test": arrays["test_labels"],
        "class_names": np.array([str(i) for i in range(10)]),
    }


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """The CIFAR-10 python batches are pickles of dicts of numpy arrays; allow exactly that."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
                ("numpy._core.multiarray", "scalar")}

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise DataError(f"CIFAR-10 batch refers to {module}.{name}; refusing to unpickle it")


def _restricted_unpickle(data: bytes) -> dict:
    return _NumpyOnlyUnpickler(io.BytesIO(data), encoding="bytes").load()


def convert_cifar10(tar_bytes: bytes) -> dict[str, np.ndarray]:
    """The CIFAR-10 python archive as fmlab npz arrays (HWC uint8 images).

    The batches are pickles; they are read with an unpickler that allows only numpy arrays.

    Args:
        tar_bytes: the ``cifar-10-python.tar.gz`` content.

    Returns:
        ``x_train`` (50000, 32, 32, 3), ``y_train``, ``x_test``, ``y_test``, ``class_names``.

    Raises:
        DataError: missing batches, or a pickle that refers to anything but numpy.
    """
    xs, ys = {}, {}
    with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:gz") as tar:
        for member in tar.getmembers():
            base = Path(member.name).name
            if not (base.startswith("data_batch_") or base == "test_batch"):
                continue
            d = _restricted_unpickle(tar.extractfile(member).read())
            xs[base] = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
            ys[base] = np.asarray(d[b"labels"], dtype=np.uint8)
    train = [f"data_batch_{i}" for i in range(1, 6)]
    if any(b not in xs for b in train + ["test_batch"]):
        raise DataError("CIFAR-10 archive is missing batches")
    return {
        "x_train": np.concatenate([xs[b] for b in train]), "y_train": np.concatenate([ys[b] for b in train]),
        "x_test": xs["test_batch"], "y_test": ys["test_batch"], "class_names": np.array(CIFAR10_CLASSES),
    }


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    """Write ``arrays`` to ``path`` as a compressed npz, atomically (no half-written file).

    Args:
        path: destination (its folder is created).
        arrays: name -> array.

    Returns:
        ``path``.
    """
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
    return path


DOWNLOADABLE = ("mnist", "cifar10")  # what `fmlab data download` can fetch; other sources are copied by hand


def download(name: str, root: Path, opener=urllib.request.urlopen) -> Path:
    """Download dataset ``name`` into ``root`` and return the written npz path.

    Args:
        name: ``mnist`` or ``cifar10``.
        root: the data root; files go to ``root/<name>/<name>.npz``.
        opener: ``urllib.request.urlopen`` or a stand-in.

    Returns:
        The path of the written npz.

    Raises:
        DataError: an unknown name, or no mirror served the right bytes.
    """
    if name == "mnist":
        raw = {k: fetch(Archive(fn, sha, tuple(m + fn for m in MNIST_MIRRORS)), opener=opener)
               for k, (fn, sha) in MNIST_FILES.items()}
        return write_npz(root / "mnist" / "mnist.npz", convert_mnist(raw))
    if name == "cifar10":
        return write_npz(root / "cifar10" / "cifar10.npz", convert_cifar10(fetch(CIFAR10, opener=opener)))
    raise DataError(f"no download for {name!r}; downloadable: {', '.join(DOWNLOADABLE)}")
