"""Download code, exercised with an in-memory opener (no network in tests)."""

import gzip
import io
import pickle
import tarfile

import numpy as np
import pytest

from fmlab.data import download as dl
from fmlab.data import open_source
from fmlab.errors import DataError
from fmlab.utils.io import sha256_bytes


class _Resp(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def _idx(arr: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return gzip.compress(header + arr.astype(np.uint8).tobytes())


def test_mnist_download_converts_and_checks(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    payload = {
        "train_images": _idx(rng.integers(0, 255, (6, 28, 28))), "train_labels": _idx(np.arange(6) % 10),
        "test_images": _idx(rng.integers(0, 255, (4, 28, 28))), "test_labels": _idx(np.arange(4)),
    }
    by_name = {dl.MNIST_FILES[k][0]: v for k, v in payload.items()}
    monkeypatch.setattr(dl, "MNIST_FILES", {k: (fn, sha256_bytes(by_name[fn]))
                                            for k, (fn, _) in dl.MNIST_FILES.items()})

    def opener(url, timeout):
        return _Resp(by_name[url.rsplit("/", 1)[1]])

    path = dl.download("mnist", tmp_path, opener=opener)
    src = open_source("mnist", tmp_path)
    assert path.is_file() and len(src.split("train")) == 6 and src.split("test").image_shape == (28, 28)


def test_sha_mismatch_is_refused(tmp_path):
    arch = dl.Archive("x.gz", "0" * 64, ("http://a/x.gz",))
    with pytest.raises(DataError, match="sha256 .* != expected"):
        dl.fetch(arch, opener=lambda url, timeout: _Resp(b"wrong"))
    assert not any(tmp_path.iterdir())


def test_cifar_conversion_and_restricted_unpickle():
    def batch(n):
        return pickle.dumps({b"data": (np.arange(n * 3072).reshape(n, 3072) % 251).astype(np.uint8),
                             b"labels": list(range(n))})

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            data = batch(2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    arrays = dl.convert_cifar10(buf.getvalue())
    assert arrays["x_train"].shape == (10, 32, 32, 3) and arrays["x_test"].shape == (2, 32, 32, 3)
    # channel-first rows become HWC: pixel (0,0) of image 0 holds values 0, 1024, 2048 mod 251
    assert list(arrays["x_train"][0, 0, 0]) == [0, 1024 % 251, 2048 % 251]

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with pytest.raises(DataError, match="refusing to unpickle"):
        dl._restricted_unpickle(pickle.dumps({b"data": Evil()}))
