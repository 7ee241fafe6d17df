"""The ``strings`` generator: the transcription is what is written left to right, character boxes are
ordered, tight and disjoint, sample i depends only on (seed, i), and bad parameters are refused."""

from __future__ import annotations

import numpy as np
import pytest

from fmlab.data.synthetic._paste import INK
from fmlab.data.synthetic.strings import render_strings, strings_width
from fmlab.errors import ConfigError
from tests.data._synthetic_pool import level_pool, pool_image_of

NAMES = ["a", "b", "c", "d"]


def test_transcription_is_the_pasted_objects_left_to_right():
    images, labels = level_pool()
    out = render_strings(images, labels, np.arange(50), seed=0, class_names=NAMES)
    for b in range(50):
        n = out["lengths"][b]
        assert 3 <= n <= 6 and (out["labels"][b, n:] == -1).all()
        read = []
        for x0, _, x1, _ in out["boxes"][b, :n].astype(int):
            read.append(labels[pool_image_of(out["images"][b, :, x0:x1].max())])  # what the pixels show
        assert read == out["labels"][b, :n].tolist()
        assert out["texts"][b] == "".join(NAMES[v] for v in read)
    assert set(out["lengths"]) == {3, 4, 5, 6}


def test_default_transcription_is_the_labels_as_digits_with_separator():
    images, labels = level_pool()
    out = render_strings(images, labels, [0, 1, 2], seed=9, sep=" ")
    for b in range(3):
        assert out["texts"][b] == " ".join(str(v) for v in out["labels"][b, : out["lengths"][b]])
    assert out["captions"] == out["texts"]


def test_boxes_are_ordered_disjoint_tight_and_hold_all_the_ink():
    images, labels = level_pool()
    out = render_strings(images, labels, np.arange(30), seed=1, min_gap=1, max_gap=3)
    width = out["images"].shape[2]
    for b in range(30):
        n = out["lengths"][b]
        boxes = out["boxes"][b, :n].astype(int)
        assert (boxes[1:, 0] > boxes[:-1, 2]).all()  # left to right, at least min_gap apart
        assert boxes[0, 0] >= 1 and boxes[-1, 2] <= width
        assert (out["boxes"][b, n:] == -1).all()
        ink = out["images"][b] > INK * 255
        in_boxes = np.zeros_like(ink)
        for x0, y0, x1, y1 in boxes:
            in_boxes[y0:y1, x0:x1] = True
            assert ink[y0:y1, x0].any() and ink[y0:y1, x1 - 1].any() and ink[y0, x0:x1].any()  # tight
        assert not (ink & ~in_boxes).any()


def test_batch_equals_one_by_one_and_seed_matters():
    images, labels = level_pool()
    idx = [5, 0, 12, 2]
    batch = render_strings(images, labels, idx, seed=3)
    for row, i in enumerate(idx):
        one = render_strings(images, labels, [i], seed=3)
        for key, value in one.items():
            if key in ("texts", "captions"):
                assert value[0] == batch[key][row]
            else:
                np.testing.assert_array_equal(value[0], batch[key][row])
    assert not np.array_equal(render_strings(images, labels, idx, seed=4)["images"], batch["images"])


def test_fixed_width_and_rgb_pool():
    images, labels = level_pool(rgb=True)
    out = render_strings(images, labels, [0, 1], seed=0, min_len=2, max_len=2, height=16)
    _, width = strings_width(images.shape, 2, 16, 4)
    assert out["images"].shape == (2, 16, width, 3) and (out["lengths"] == 2).all()
    grey = render_strings(images[..., 0], labels, [0, 1], seed=0, min_len=2, max_len=2, height=16)
    np.testing.assert_array_equal(out["images"][..., 2], grey["images"])


@pytest.mark.parametrize(("params", "key"), [
    ({"min_len": 0}, "min_len"),
    ({"min_len": 5, "max_len": 4}, "max_len"),
    ({"height": 0}, "height"),
    ({"min_gap": -1}, "min_gap"),
    ({"min_gap": 3, "max_gap": 2}, "max_gap"),
    ({"seed": -2}, "seed"),
    ({"indices": [[0, 1]]}, "indices"),
    ({"class_names": ["x", "y"]}, "class_names"),
])
def test_bad_params_are_refused_naming_the_parameter(params, key):
    images, labels = level_pool()
    kwargs = {"indices": [0, 1, 2, 3], "seed": 0, **params}
    with pytest.raises(ConfigError, match=key):
        render_strings(images, labels, **kwargs)


def test_mnist_digit_strings(data_root):
    from fmlab.data import open_source

    split = open_source("mnist", data_root).split("test")
    images, labels = split.get_batch(np.arange(500)), split.labels[:500]
    out = render_strings(images, labels, np.arange(20), seed=0, class_names=split.class_names)
    for b in range(20):
        n = out["lengths"][b]
        assert out["texts"][b].isdigit() and out["texts"][b] == "".join(map(str, out["labels"][b, :n]))
        ink = out["images"][b] > INK * 255
        in_boxes = np.zeros_like(ink)
        for x0, y0, x1, y1 in out["boxes"][b, :n].astype(int):
            in_boxes[y0:y1, x0:x1] = True
        assert not (ink & ~in_boxes).any()
