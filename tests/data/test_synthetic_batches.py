"""RenderedSource (a synthetic split as the engine's source) and the shapes pool example."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from fmlab.data import open_source
from fmlab.data.synthetic.batches import RenderedSource, tensor_batch
from fmlab.errors import ConfigError, DataError

ROOT = Path(__file__).resolve().parents[2]


def _shapes_module():
    spec = importlib.util.spec_from_file_location("make_shapes_pool", ROOT / "examples" / "make_shapes_pool.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def shapes_npz(tmp_path_factory) -> Path:
    mod = _shapes_module()
    path = tmp_path_factory.mktemp("pool") / "shapes.npz"
    x_tr, y_tr = mod.make_shapes(60, 0)
    x_te, y_te = mod.make_shapes(30, 1)
    np.savez(path, x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te, class_names=np.array(mod.CLASS_NAMES))
    return path


def test_rendered_source_is_a_train_source_and_matches_the_split(shapes_npz):
    split = open_source(f"canvas?objects=npz:{shapes_npz}&size=32&n_train=20&n_test=5").split("train")
    src = RenderedSource(split, limit=7)
    assert all(callable(getattr(src, m, None)) for m in ("__len__", "get_batch"))  # TrainSource
    assert len(src) == 7 and list(src.labels) == list(split.labels[:7])
    batch = src.get_batch(np.array([6, 2]))
    ref = split.render(np.array([6, 2]))
    assert torch.equal(batch["images"], torch.as_tensor(ref["images"]))
    assert batch["boxes"].dtype == torch.float32 and batch["labels"].dtype == torch.int64
    whole = src.render_all(batch_size=3)
    assert whole["images"].shape[0] == 7 and len(whole["captions"]) == 7
    assert torch.equal(whole["images"][2], batch["images"][1])


def test_rendered_source_refuses_indices_past_the_limit_and_a_bad_limit(shapes_npz):
    split = open_source(f"canvas?objects=npz:{shapes_npz}&size=32&n_train=20&n_test=5").split("train")
    with pytest.raises(DataError, match="out of range of 4"):
        RenderedSource(split, limit=4).get_batch(np.array([4]))
    with pytest.raises(ConfigError, match="data.limit"):
        RenderedSource(split, limit=-1)
    assert len(RenderedSource(split, limit=1000)) == 20


def test_tensor_batch_keeps_uint8_and_widens_other_integers():
    b = tensor_batch({"images": np.zeros((1, 2, 2), np.uint8), "n": np.array([3], np.int16), "t": ["x"]})
    assert b["images"].dtype == torch.uint8 and b["n"].dtype == torch.int64 and b["t"] == ["x"]


def test_shapes_pool_names_its_classes_in_captions(shapes_npz):
    """Nothing is wired to digits: a user's npz pool names its own classes in the captions."""
    mod = _shapes_module()
    src = open_source(f"canvas?objects=npz:{shapes_npz}&size=48&n_train=10&n_test=4")
    assert src.class_names == mod.CLASS_NAMES
    caps = src.split("test").captions
    assert all(any(name in c for name in mod.CLASS_NAMES) for c in caps)
    assert not any(ch.isdigit() for c in caps for ch in c)


def test_make_shapes_is_deterministic_and_every_class_has_ink():
    mod = _shapes_module()
    a, la = mod.make_shapes(40, 3)
    b, lb = mod.make_shapes(40, 3)
    assert np.array_equal(a, b) and np.array_equal(la, lb)
    assert (a.reshape(40, -1).max(1) >= 180).all()
    assert set(la.tolist()) <= set(range(len(mod.CLASS_NAMES)))
