"""The ``canvas`` synthetic source (issue 21): determinism, pixel-exact boxes and masks, no leak."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fmlab.data import open_source, parse_split_spec
from fmlab.data.synthetic import SyntheticSplit, synthetic_kinds
from fmlab.data.synthetic.canvas import canvas_layout, render_canvas, semantic_mask
from fmlab.errors import ConfigError, DataError

NAMES = ["cat", "dog", "owl", "ant"]


def _pool(n: int = 12, hw: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Digit-like blobs: a bright random blob in the middle of a dark square."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, hw, hw), np.uint8)
    x[:, 2:-2, 2:-2] = rng.integers(0, 256, size=(n, hw - 4, hw - 4))
    x[:, hw // 2 - 1:hw // 2 + 1, hw // 2 - 1:hw // 2 + 1] = 255  # never empty
    return x, np.arange(n) % len(NAMES)


@pytest.fixture
def pool_npz(tmp_path) -> Path:
    """Train objects have labels {0, 1} only, test objects {2, 3} only."""
    x, _ = _pool(16)
    path = tmp_path / "pool.npz"
    np.savez(path, x_train=x[:8], y_train=np.arange(8) % 2, x_test=x[8:], y_test=2 + np.arange(8) % 2,
             class_names=np.array(NAMES))
    return path


def test_render_is_deterministic_and_batch_independent():
    x, y = _pool()
    idx = np.array([7, 0, 31, 5, 7])
    a = render_canvas(x, y, idx, seed=3, size=32, noise=0.2)
    b = render_canvas(x, y, idx, seed=3, size=32, noise=0.2)
    for key in a:
        assert np.array_equal(np.asarray(a[key]), np.asarray(b[key])), key
    for j, i in enumerate(idx):
        one = render_canvas(x, y, np.array([i]), seed=3, size=32, noise=0.2)
        for key in a:
            assert np.array_equal(np.asarray(a[key])[j], np.asarray(one[key])[0]), (key, i)
    other = render_canvas(x, y, idx, seed=4, size=32, noise=0.2)
    assert not np.array_equal(a["images"], other["images"])


def test_boxes_and_masks_agree_with_the_pasted_pixels():
    x, y = _pool()
    out = render_canvas(x, y, np.arange(200), seed=0, size=40, max_objects=3)
    images, masks, boxes = out["images"], out["masks"], out["boxes"]
    assert ((masks > 0) <= (images.max(-1) > 0)).all()  # mask pixels are painted
    lay = canvas_layout(y, np.arange(200), 0, 40, 3)
    for b in range(len(masks)):
        n = int(out["n_objects"][b])
        assert (boxes[b, n:] == -1).all() and (out["labels"][b, n:] == -1).all()
        assert masks[b].max() <= n
        for k in range(n):
            ys, xs = np.nonzero(masks[b] == k + 1)
            x1, y1, x2, y2 = boxes[b, k]
            if ys.size:  # visible pixels lie inside the object's box
                assert xs.min() >= x1 and xs.max() < x2 and ys.min() >= y1 and ys.max() < y2
            if k == n - 1:  # the top-most object is never occluded: its box is the mask's tight box
                assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x1, y1, x2, y2)
        background = np.ones(masks[b].shape, bool)
        for k in range(n):
            x0, y0, side = lay["x0"][b, k], lay["y0"][b, k], lay["side"][b, k]
            assert boxes[b, k, 0] >= x0 and boxes[b, k, 2] <= x0 + side  # box inside the object's square
            background[y0:y0 + side, x0:x0 + side] = False
        assert (images[b][background] == 0).all()  # noise=0: nothing painted outside the objects' squares


def test_solid_objects_fill_exactly_their_square():
    x = np.full((3, 6, 6), 255, np.uint8)
    idx = np.arange(50)
    out = render_canvas(x, np.arange(3), idx, seed=1, size=32, max_objects=1)
    lay = canvas_layout(np.arange(3), idx, 1, 32, 1)
    x0, y0, side = lay["x0"][:, 0], lay["y0"][:, 0], lay["side"][:, 0]
    assert np.array_equal(out["boxes"][:, 0], np.stack([x0, y0, x0 + side, y0 + side], 1).astype(np.float32))
    assert np.array_equal((out["masks"] == 1).sum((1, 2)), side * side)
    sem = semantic_mask(out["masks"], out["labels"])
    assert np.array_equal(sem.max((1, 2)), out["labels"][:, 0] + 1)


def test_caption_names_every_object():
    x, y = _pool()
    out = render_canvas(x, y, np.arange(100), seed=0, size=32, class_names=NAMES)
    for cap, labels, n in zip(out["captions"], out["labels"], out["n_objects"], strict=True):
        words = cap.replace(",", "").split()
        for lab in labels[:n]:
            assert NAMES[lab] in words, (cap, labels)
        assert sum(w in ("small", "large") for w in words) == n
    assert {int(n) for n in out["n_objects"]} == {1, 2, 3}


def test_test_split_uses_only_test_objects(pool_npz):
    src = open_source(f"canvas?objects=npz:{pool_npz}&size=32&n_train=60&n_test=60")
    assert src.class_names == NAMES
    for name, allowed in (("train", {0, 1}), ("test", {2, 3})):
        split = src.split(name)
        out = split.render(np.arange(len(split)))
        seen = set(out["labels"][out["labels"] >= 0].tolist())
        assert seen == allowed, (name, seen)
        assert set(split.labels.tolist()) <= allowed
        assert all(NAMES[c] not in " ".join(split.captions) for c in {0, 1, 2, 3} - allowed)


def test_source_splits_behave_like_image_and_text_splits(pool_npz):
    spec = f"canvas?objects=npz:{pool_npz}&size=32&n_train=20&n_test=10&seed=5"
    src = open_source(spec)
    test = src.split("test")
    assert isinstance(test, SyntheticSplit) and len(test) == 10
    batch = test.get_batch([3, 1])
    assert batch.shape == (2, 32, 32, 3) and batch.dtype == np.uint8
    assert np.array_equal(batch[0], test.get_batch([3])[0])
    assert test.labels.shape == (10,) and len(test.captions) == 10
    assert test.images is test and np.array_equal(test.caption_image_index, np.arange(10))
    assert test.captions[3] == test.render([3])["captions"][0]
    again = open_source(spec).split("test")
    assert again.content_hash == test.content_hash != src.split("train").content_hash
    assert open_source(spec.replace("seed=5", "seed=6")).split("test").content_hash != test.content_hash
    assert parse_split_spec(f"{spec}:train") == (spec, "train")
    assert parse_split_spec(spec) == (spec, None)
    assert "canvas" in synthetic_kinds()


def test_captions_feed_the_image_text_training_source(pool_npz):
    from fmlab.data.labelled import open_labelled
    from fmlab.multimodal.data import ImageTextPairs

    spec = f"canvas?objects=npz:{pool_npz}&size=32&n_train=12&n_test=6"
    pairs = ImageTextPairs(open_source(spec).split("train"))
    batch = pairs.get_batch(np.arange(4))
    assert batch["images"].shape == (4, 32, 32, 3)
    assert batch["caption_ids"].tolist() == [0, 1, 2, 3]  # one caption per canvas: its own
    _, train, test, _ = open_labelled(spec)
    assert (len(train), len(test)) == (12, 6)


@pytest.mark.parametrize("query, key", [
    ("size=8", "size"), ("max_objects=0", "max_objects"), ("noise=2", "noise"),
    ("threshold=1", "threshold"), ("n_train=0", "n_train"), ("seed=-1", "seed"),
    ("size=big", "size"), ("sise=64", "sise"), ("size", "size"), ("objects=canvas", "objects"),
])
def test_bad_parameters_name_the_parameter(pool_npz, query, key):
    with pytest.raises(ConfigError, match=key) as err:
        open_source(f"canvas?objects=npz:{pool_npz}&{query}")
    if query.startswith("sise"):
        assert "did you mean 'size'" in str(err.value) and "max_objects" in str(err.value)


def test_unlabelled_or_missing_pool_is_a_data_error(tmp_path):
    path = tmp_path / "nolabels.npz"
    np.savez(path, x_train=np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(DataError):
        open_source(f"canvas?objects=npz:{path}")
    with pytest.raises(DataError):
        open_source(f"canvas?objects=npz:{tmp_path / 'absent.npz'}")


def test_preview_cli_writes_a_png_and_refuses_bad_input(pool_npz, tmp_path):
    from fmlab.cli.main import main

    spec = f"canvas?objects=npz:{pool_npz}&size=32&n_test=6"
    out = tmp_path / "grid.png"
    assert main(["data", "preview", spec, "--n", "6", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = tmp_path / "bad.png"
    assert main(["data", "preview", spec, "--n", "0", "--out", str(bad)]) == 2
    assert main(["data", "preview", spec.replace("size=32", "size=x"), "--out", str(bad)]) == 2
    assert main(["data", "preview", spec, "--out", str(tmp_path / "grid.txt")]) == 2
    assert main(["data", "preview", spec, "--split", "val", "--out", str(bad)]) == 2
    assert not bad.exists() and not list(tmp_path.glob(".*.tmp")) and not list(tmp_path.glob(".bad*"))


def test_data_list_shows_the_synthetic_kinds(capsys):
    from fmlab.cli.main import main

    assert main(["data", "list"]) == 0
    assert "canvas" in capsys.readouterr().out


def test_canvas_over_mnist(data_root):
    src = open_source("canvas?n_train=8&n_test=8", data_root)
    out = src.split("test").render(np.arange(8))
    assert out["images"].shape == (8, 64, 64, 3) and src.class_names == [str(i) for i in range(10)]


def test_one_decorator_plugs_a_new_kind_in(pool_npz, capsys):
    """A generator without a layout function: labels and captions come from rendering it."""
    from fmlab.cli.main import main
    from fmlab.data.synthetic import SYNTHETIC, register_synthetic

    @register_synthetic("_stripes", params={"width": 3}, description="test stripes")
    def render_stripes(pool_images, pool_labels, indices, seed, width=3, class_names=None):
        from fmlab.utils.validation import positive_int

        positive_int("width", width)
        rows = np.asarray(indices) % len(pool_labels)
        images = np.repeat(pool_images[rows][..., None], 3, axis=-1)[:, :, :width]
        return {"images": images, "labels": pool_labels[rows],
                "captions": [f"{class_names[y]} stripe" for y in pool_labels[rows]]}

    try:
        src = open_source(f"_stripes?objects=npz:{pool_npz}&width=4&n_test=5")
        test = src.split("test")
        assert test.get_batch([0, 1]).shape == (2, 10, 4, 3)
        assert test.labels.tolist() == [2, 3, 2, 3, 2] and test.captions[1] == "ant stripe"
        with pytest.raises(ConfigError, match="width"):
            open_source(f"_stripes?objects=npz:{pool_npz}&width=0")
        assert main(["data", "list"]) == 0
        assert "_stripes" in capsys.readouterr().out
    finally:
        SYNTHETIC.pop("_stripes", None)
