"""Measured digit/colour attributes on drawn shapes, train-fitted terciles, seeded captions."""

from __future__ import annotations

import numpy as np
import pytest

from fmlab.data.attributes import (
    AttributeBinner,
    colour_names,
    digit_attributes,
    template_captions,
)
from fmlab.errors import DataError


def _bar(width: int, shear: float = 0.0, value: float = 1.0, length: int = 20) -> np.ndarray:
    """A vertical stroke of ``width`` px, its top shifted right by ``shear`` px per row upward."""
    img = np.zeros((28, 28))
    for r in range(4, 4 + length):
        x0 = int(round(12 + shear * (4 + length - 1 - r)))
        img[r, x0:x0 + width] = value
    return img


def test_thickness_grows_with_stroke_width_and_is_close_for_long_strokes():
    t = digit_attributes(np.stack([_bar(w) for w in (1, 2, 3, 4)]))["thickness"]
    assert np.all(np.diff(t) > 0)
    length = 20
    np.testing.assert_allclose(t, [w * length / (length + w) for w in (1, 2, 3, 4)], rtol=1e-9)


def test_slant_sign_follows_the_lean_and_upright_is_zero():
    a = digit_attributes(np.stack([_bar(2, 0.0), _bar(2, 0.4), _bar(2, -0.4)]))["slant"]
    assert a[0] == pytest.approx(0.0, abs=1e-9)
    assert a[1] > 0.3 and a[2] < -0.3
    assert a[1] == pytest.approx(-a[2], rel=0.05)


def test_brightness_is_the_mean_ink_value_and_empty_images_are_nan():
    out = digit_attributes(np.stack([_bar(3, value=0.8), np.zeros((28, 28))]))
    assert out["brightness"][0] == pytest.approx(0.8)
    assert np.isnan(out["thickness"][1])
    u8 = digit_attributes((np.stack([_bar(3, value=0.8)]) * 255).astype(np.uint8))
    assert u8["brightness"][0] == pytest.approx(0.8, abs=1 / 255)


def test_colour_names():
    imgs = np.zeros((4, 8, 8, 3), np.uint8)
    imgs[0, ..., 0] = 220
    imgs[1, ..., 2] = 200
    imgs[2, ..., 1] = 180
    imgs[3] = 128
    assert colour_names(imgs) == ["red", "blue", "green", "grey"]


def test_binner_uses_train_terciles_and_words():
    train = {"thickness": np.arange(9.0)}
    b = AttributeBinner().fit(train)
    assert b.bins({"thickness": np.array([0.5, 4.0, 8.0, np.nan])})["thickness"].tolist() == [0, 1, 2, 1]
    assert b.words({"thickness": np.array([0.0, 8.0])})["thickness"] == ["thin", "thick"]
    with pytest.raises(DataError, match="'colourfulness'"):
        AttributeBinner().fit({"colourfulness": np.ones(3)})


def test_template_captions_are_seeded_and_say_the_class_and_attributes():
    words = {"thickness": ["thin", "thick"], "slant": ["upright", "slanted to the left"],
             "brightness": ["bright", "faint"]}
    a = template_captions([7, 1], words, seed=0)
    assert a == template_captions([7, 1], words, seed=0)
    assert "seven" in a[0] and "thin" in a[0] and "upright" in a[0]
    assert "one" in a[1] and "thick" in a[1]
    with pytest.raises(DataError, match="'colour'"):
        template_captions([1], {"thickness": ["thin"]}, seed=0, templates=("a {colour} {digit}",))
