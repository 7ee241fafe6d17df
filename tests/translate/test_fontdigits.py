"""The ``fontdigits`` synthetic source: seeded, batch-independent, exact labels and boxes."""

from __future__ import annotations

import numpy as np
import pytest

from fmlab.data.synthetic.fontdigits import FONT_FILES, fontdigits_layout, font_dir, render_fontdigits


def test_every_font_is_shipped():
    missing = [f for f in FONT_FILES if not (font_dir() / f).is_file()]
    assert not missing


def test_render_is_batch_independent_and_labels_match_layout():
    idx = np.array([3, 7, 11, 12])
    whole = render_fontdigits(None, None, idx, seed=5)
    one = render_fontdigits(None, None, idx[2:3], seed=5)
    assert np.array_equal(whole["images"][2], one["images"][0])
    assert np.array_equal(whole["label"], fontdigits_layout(None, idx, seed=5)["label"])
    other = render_fontdigits(None, None, idx, seed=6)
    assert not np.array_equal(whole["images"], other["images"])


@pytest.mark.parametrize("size", [28, 40])
def test_boxes_are_tight_around_the_ink(size):
    out = render_fontdigits(None, None, np.arange(20), seed=0, size=size)
    for img, box in zip(out["images"], out["boxes"][:, 0]):
        ys, xs = np.nonzero(img)
        x0, y0, x1, y1 = box
        # every inked pixel lies inside the box; the box edges touch inked pixels
        assert xs.min() >= np.floor(x0) and xs.max() < np.ceil(x1)
        assert ys.min() >= np.floor(y0) and ys.max() < np.ceil(y1)
        assert xs.min() <= x0 + 1 and xs.max() >= x1 - 2 and 0 <= x0 < x1 <= size


def test_open_source_spec(data_root):
    from fmlab.data import open_source

    src = open_source("fontdigits?n_train=12&n_test=4&seed=1", data_root)
    tr = src.split("train")
    assert tr.get_batch(np.arange(12)).shape == (12, 28, 28)
    assert src.class_names == [str(i) for i in range(10)] and len(tr.labels) == 12
