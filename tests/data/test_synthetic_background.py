"""``canvas`` backgrounds and distractors (issue 21): defaults unchanged, layout untouched, deterministic."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from fmlab.data import open_source
from fmlab.data.synthetic.background import paint_distractors, render_background
from fmlab.data.synthetic.canvas import render_canvas
from fmlab.errors import ConfigError

# sha256 of render_canvas's outputs over _pool(), computed on the commit before backgrounds existed (fd06e06)
DEFAULT_HASH = "0efdeb63137ecd23f9ea366a53c14f7ee4567284bb65c919fa2484ae72be5cb5"  # seed 7, samples 0..63
NOISE_HASH = "691ef39ea2a57f4acad19dc8f44f9d60628301b831ca7550a36e2f2bc00d559e"  # + noise=0.2, size=40
LAYOUT_KEYS = ("masks", "boxes", "labels", "colours", "sizes", "n_objects")
CLUTTER = [{"background": "gradient"}, {"background": "texture"}, {"distractors": 4},
           {"background": "texture", "distractors": 3, "noise": 0.3}]


def _pool(n: int = 12, hw: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Digit-like blobs (the same pool as test_synthetic_canvas.py)."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, hw, hw), np.uint8)
    x[:, 2:-2, 2:-2] = rng.integers(0, 256, size=(n, hw - 4, hw - 4))
    x[:, hw // 2 - 1:hw // 2 + 1, hw // 2 - 1:hw // 2 + 1] = 255
    return x, np.arange(n) % 4


def _digest(out: dict) -> str:
    h = hashlib.sha256()
    for key in ("images", *LAYOUT_KEYS):
        h.update(np.ascontiguousarray(out[key]).tobytes())
    h.update("\n".join(out["captions"]).encode())
    return h.hexdigest()


def test_defaults_are_bit_identical_to_before():
    x, y = _pool()
    idx = np.arange(64)
    assert _digest(render_canvas(x, y, idx, seed=7)) == DEFAULT_HASH
    assert _digest(render_canvas(x, y, idx, seed=7, background="none", distractors=0)) == DEFAULT_HASH
    assert _digest(render_canvas(x, y, idx, seed=7, noise=0.2, size=40)) == NOISE_HASH


@pytest.mark.parametrize("params", CLUTTER)
def test_clutter_changes_pixels_but_not_the_layout(params):
    x, y = _pool()
    idx = np.arange(80)
    base = render_canvas(x, y, idx, seed=2, size=48, noise=params.get("noise", 0.0))
    out = render_canvas(x, y, idx, seed=2, size=48, **params)
    for key in LAYOUT_KEYS:
        assert np.array_equal(out[key], base[key]), key
    assert out["captions"] == base["captions"]
    assert not np.array_equal(out["images"], base["images"])
    # clutter lies under the objects: an opaque object's pixels keep its colour exactly
    solid = render_canvas(np.full_like(x, 255), y, idx, seed=2, size=48, **params)
    solid_base = render_canvas(np.full_like(x, 255), y, idx, seed=2, size=48, noise=params.get("noise", 0.0))
    on = solid["masks"] > 0
    assert on.any() and np.array_equal(solid["images"][on], solid_base["images"][on])


@pytest.mark.parametrize("params", CLUTTER)
def test_clutter_is_deterministic_and_batch_independent(params):
    x, y = _pool()
    idx = np.array([9, 0, 33, 9, 4])
    batch = render_canvas(x, y, idx, seed=5, size=32, **params)
    assert _digest(batch) == _digest(render_canvas(x, y, idx, seed=5, size=32, **params))
    for j, i in enumerate(idx):
        one = render_canvas(x, y, np.array([i]), seed=5, size=32, **params)
        assert np.array_equal(batch["images"][j], one["images"][0]), i
    other = render_canvas(x, y, idx, seed=6, size=32, **params)
    assert not np.array_equal(batch["images"], other["images"])


def test_backgrounds_are_smooth_and_in_range():
    idx = np.arange(16)
    for kind in ("gradient", "texture"):
        bg = render_background(kind, 0, idx, 64)
        assert bg.shape == (16, 64, 64, 3) and bg.dtype == np.float32
        assert bg.min() >= 0 and bg.max() <= 180
        step = np.abs(np.diff(bg, axis=2)).max()  # low frequency: neighbours differ by little
        assert step < 12, (kind, step)
        assert bg.reshape(16, -1).std(1).min() > 0  # not flat
        assert not np.array_equal(bg[0], bg[1])
    assert render_background("none", 0, idx, 64) is None


def test_distractors_paint_only_where_they_are():
    canvas = np.zeros((32, 40, 40, 3), np.float32)
    paint_distractors(canvas, 1, np.arange(32), 1)
    painted = (canvas.max(-1) > 0).mean((1, 2))
    assert (painted > 0).all() and (painted < 0.5).all()  # one stroke or blob, never the whole canvas
    assert canvas.max() <= 180
    with pytest.raises(ConfigError, match="canvas"):
        paint_distractors(np.zeros((2, 8, 8, 3), np.float32)[:, ::2], 0, np.arange(2), 1)


@pytest.mark.parametrize("query, key", [
    ("background=wood", "background"), ("background=", "background"), ("distractors=-1", "distractors"),
    ("distractors=33", "distractors"), ("distractors=two", "distractors"),
])
def test_bad_clutter_parameters_name_the_parameter(tmp_path, query, key):
    x, y = _pool(8)
    path = tmp_path / "pool.npz"
    np.savez(path, x_train=x, y_train=y, x_test=x, y_test=y)
    with pytest.raises(ConfigError, match=key):
        open_source(f"canvas?objects=npz:{path}&{query}")
    with pytest.raises(ConfigError, match=key):
        render_canvas(x, y, np.arange(2), 0, **{key: query.partition("=")[2]})


def test_source_spec_accepts_clutter(tmp_path):
    x, y = _pool(8)
    path = tmp_path / "pool.npz"
    np.savez(path, x_train=x, y_train=y, x_test=x, y_test=y)
    spec = f"canvas?objects=npz:{path}&size=32&n_test=6"
    plain = open_source(spec).split("test")
    clutter = open_source(f"{spec}&background=gradient&distractors=2").split("test")
    assert clutter.captions == plain.captions and np.array_equal(clutter.labels, plain.labels)
    assert clutter.content_hash != plain.content_hash
    assert not np.array_equal(clutter.get_batch([0, 1]), plain.get_batch([0, 1]))
