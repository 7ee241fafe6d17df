import io
import json

import numpy as np
import pytest
from PIL import Image

from fmlab.data import open_source
from fmlab.errors import DataError
from tests.conftest import make_npz


def _jpeg(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def test_npz_array_source(tiny_npz):
    src = open_source(f"npz:{tiny_npz}")
    assert set(src.splits) == {"train", "test"}
    tr = src.split("train")
    assert len(tr) == 40 and tr.class_names == ["c0", "c1", "c2", "c3"]
    batch = tr.get_batch([0, 5, 39])
    assert batch.shape == (3, 8, 8, 3) and batch.dtype == np.uint8
    assert tr.labels.dtype == np.int64
    assert tr.info()["per_class"] == [10, 10, 10, 10]
    # same bytes -> same content hash; different split -> different hash
    assert open_source(f"npz:{tiny_npz}").split("train").content_hash == tr.content_hash
    assert src.split("test").content_hash != tr.content_hash


def test_npz_grey_source(tmp_path):
    p = make_npz(tmp_path / "g.npz", channels=None)
    assert open_source(f"npz:{p}").split("train").get_batch([0]).shape == (1, 8, 8)


def test_npz_encoded_source(tmp_path):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 255, size=(5, 6, 6, 3), dtype=np.uint8)
    parts = [np.frombuffer(_jpeg(im), np.uint8) for im in imgs]
    off = np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(np.int64)
    p = tmp_path / "enc.npz"
    np.savez(p, x_train_jpeg=np.concatenate(parts), x_train_jpeg_offsets=off, y_train=np.arange(5) % 2)
    sp = open_source(f"npz:{p}").split("train")
    assert np.array_equal(sp.get_batch(range(5)), imgs)  # PNG is lossless
    assert sp.class_names == ["0", "1"]


# ---- bad input: one clear error naming the file and the problem ----

def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="file not found: .*nope.npz"):
        open_source(f"npz:{tmp_path / 'nope.npz'}")


def test_missing_key(tmp_path):
    p = make_npz(tmp_path / "k.npz", y_test=None)
    with pytest.raises(DataError, match=r"k\.npz: missing key 'y_test'"):
        open_source(f"npz:{p}")


def test_mismatched_lengths(tmp_path):
    p = make_npz(tmp_path / "m.npz", y_train=np.zeros(39, np.uint8))
    with pytest.raises(DataError, match=r"m\.npz: split 'train' has 40 images but y_train has 39 labels"):
        open_source(f"npz:{p}")


def test_label_out_of_range(tmp_path):
    y = np.zeros(40, np.uint8)
    y[7] = 9
    p = make_npz(tmp_path / "l.npz", y_train=y)
    with pytest.raises(DataError, match=r"l\.npz: y_train has label 9 outside 0\.\.3"):
        open_source(f"npz:{p}")


def test_undecodable_bytes(tmp_path):
    good = np.frombuffer(_jpeg(np.zeros((4, 4, 3), np.uint8)), np.uint8)
    bad = np.frombuffer(b"this is not an image", np.uint8)
    buf = np.concatenate([good, bad])
    off = np.array([0, len(good), len(buf)], np.int64)
    p = tmp_path / "u.npz"
    np.savez(p, x_train_jpeg=buf, x_train_jpeg_offsets=off, y_train=np.array([0, 1]))
    sp = open_source(f"npz:{p}").split("train")
    sp.get_batch([0])
    with pytest.raises(DataError, match=r"u\.npz: image 1 of split 'train' cannot be decoded"):
        sp.get_batch([0, 1])


def test_bad_offsets(tmp_path):
    p = tmp_path / "o.npz"
    np.savez(p, x_train_jpeg=np.zeros(10, np.uint8), x_train_jpeg_offsets=np.array([0, 4, 12]),
             y_train=np.array([0, 1]))
    with pytest.raises(DataError, match="offsets"):
        open_source(f"npz:{p}")


def test_wrong_dtype(tmp_path):
    p = make_npz(tmp_path / "f.npz", x_train=np.zeros((40, 8, 8, 3), np.float32))
    with pytest.raises(DataError, match=r"f\.npz: x_train must be uint8"):
        open_source(f"npz:{p}")


def test_not_an_npz(tmp_path):
    p = tmp_path / "x.npz"
    p.write_text("hello")
    with pytest.raises(DataError, match=r"x\.npz: not a readable \.npz"):
        open_source(f"npz:{p}")


def test_unknown_names():
    with pytest.raises(DataError, match="unknown dataset 'imagenet'"):
        open_source("imagenet")
    with pytest.raises(DataError, match="unknown source kind 'zip'"):
        open_source("zip:/x")


def test_named_missing_root(tmp_path):
    with pytest.raises(DataError, match="dataset 'mnist' not found under data root") as err:
        open_source("mnist", tmp_path)
    assert "fmlab data download mnist" in str(err.value)
    # no download exists for EuroSAT: the message must not offer one
    with pytest.raises(DataError, match="dataset 'eurosat' not found under data root") as err:
        open_source("eurosat", tmp_path)
    assert "download" not in str(err.value) and "copy it there" in str(err.value)


def test_folder_source(tmp_path):
    for split in ("train", "test"):
        for c in ("cat", "dog"):
            d = tmp_path / "f" / split / c
            d.mkdir(parents=True)
            for i in range(3):
                Image.fromarray(np.full((5, 5, 3), 40 * i, np.uint8)).save(d / f"{i}.png")
    src = open_source(f"folder:{tmp_path / 'f'}")
    assert src.class_names == ["cat", "dog"]
    tr = src.split("train")
    assert len(tr) == 6 and list(tr.labels) == [0, 0, 0, 1, 1, 1]
    assert tr.get_batch([4]).shape == (1, 5, 5, 3)
    (tmp_path / "f" / "train" / "dog" / "9.png").write_bytes(b"garbage")
    sp = open_source(f"folder:{tmp_path / 'f'}").split("train")
    with pytest.raises(DataError, match=r"9\.png cannot be decoded"):
        sp.get_batch(range(len(sp)))


def test_imagetext_jsonl_and_csv(tmp_path):
    for i in range(3):
        Image.fromarray(np.full((6, 6, 3), 50 * i, np.uint8)).save(tmp_path / f"{i}.png")
    recs = [{"image": "0.png", "caption": "a"}, {"image": "0.png", "caption": "b"},
            {"image": "1.png", "caption": "c"}, {"image": "2.png", "caption": "d", "split": "val"}]
    (tmp_path / "p.jsonl").write_text("\n".join(json.dumps(r) for r in recs))
    src = open_source(f"jsonl:{tmp_path / 'p.jsonl'}")
    tr = src.split("train")
    assert len(tr) == 2 and tr.captions == ["a", "b", "c"] and list(tr.caption_image_index) == [0, 0, 1]
    assert len(src.split("val")) == 1
    (tmp_path / "p.csv").write_text("image,caption\n0.png,hello\n1.png,world\n")
    assert open_source(f"csv:{tmp_path / 'p.csv'}").split("train").captions == ["hello", "world"]
    (tmp_path / "bad.jsonl").write_text('{"image": "missing.png", "caption": "x"}\n')
    with pytest.raises(DataError, match="image file not found"):
        open_source(f"jsonl:{tmp_path / 'bad.jsonl'}")
    (tmp_path / "bad2.jsonl").write_text('{"image": "0.png"}\n')
    with pytest.raises(DataError, match=r"bad2\.jsonl: record 1: missing caption"):
        open_source(f"jsonl:{tmp_path / 'bad2.jsonl'}")


def test_named_real_datasets(data_root):
    mn = open_source("mnist", data_root)
    assert len(mn.split("train")) == 60000 and mn.split("test").image_shape == (28, 28)
    cf = open_source("cifar10", data_root)
    assert cf.metadata["variant"] == "jpeg_q75"
    tr = cf.split("train")
    assert len(tr) == 50000 and tr.get_batch([0, 49999]).shape == (2, 32, 32, 3)
    coco = open_source("coco_mini", data_root)
    assert len(coco.split("train")) == 80 and len(coco.split("val")) == 79
    assert len(coco.split("train").captions) == 400


def test_demo_source_is_packaged():
    src = open_source("cifar10_demo", "/nonexistent")
    assert len(src.split("train")) == 1000 and len(src.split("test")) == 1000
    assert src.split("train").info()["per_class"] == [100] * 10


def test_npz_array_limit_is_inclusive_and_named(tmp_path, monkeypatch):
    """Probe F8: the limit compares prod(shape) * itemsize from the header, before loading."""
    from fmlab.errors import ConfigError

    src = make_npz(tmp_path / "s.npz")  # x_train (40, 8, 8, 3) uint8 = 7680 bytes, the largest array
    monkeypatch.setenv("FMLAB_MAX_ARRAY_BYTES", "7680")
    assert len(open_source(f"npz:{src}").split("train")) == 40
    monkeypatch.setenv("FMLAB_MAX_ARRAY_BYTES", "7679")
    with pytest.raises(DataError, match=r"s\.npz: array 'x_train' of shape \(40, 8, 8, 3\) uint8 needs 7\.5 KiB"):
        open_source(f"npz:{src}")
    monkeypatch.setenv("FMLAB_MAX_ARRAY_BYTES", "lots")
    with pytest.raises(ConfigError, match=r"\$FMLAB_MAX_ARRAY_BYTES: 'lots'"):
        open_source(f"npz:{src}")


def test_jsonl_source_not_utf8_names_the_file(tmp_path):
    """Probe F6: read_records raised a bare UnicodeDecodeError."""
    from fmlab.data.imagetext import read_records

    p = tmp_path / "caps.jsonl"
    p.write_bytes(b'{"image": "a.png", "caption": "ok"}\n{"image": "b.png", "caption": "caf\xe9"}\n')
    with pytest.raises(DataError, match=r"caps\.jsonl: not UTF-8 text"):
        read_records(p)
    q = tmp_path / "caps.csv"
    q.write_bytes(b"image,caption\na.png,caf\xe9\n")
    with pytest.raises(DataError, match=r"caps\.csv: not UTF-8 text"):
        read_records(q)
