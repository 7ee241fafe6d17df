"""The ``eurosat`` named source: 3,000 / 1,000 64x64 RGB images, 10 classes, split hashes."""

from __future__ import annotations

import numpy as np

from fmlab.data import NAMED, open_source


def test_eurosat_is_listed_named_dataset():
    ds = NAMED["eurosat"]
    assert ds.kind == "image" and ds.candidates == ("eurosat/eurosat_rgb_4k.npz",)


def test_eurosat_source_shapes_classes_and_hashes(data_root):
    src = open_source("eurosat", data_root)
    tr, te = src.split("train"), src.split("test")
    assert (len(tr), len(te)) == (3000, 1000)
    assert tr.image_shape == (64, 64, 3) and src.class_names[0] == "AnnualCrop"
    assert tr.info()["per_class"] == [300] * 10 and te.info()["per_class"] == [100] * 10
    # stored class by class: labels sorted (the reason every trainer must shuffle)
    assert np.all(np.diff(tr.labels) >= 0)
    assert tr.content_hash != te.content_hash
    assert open_source("eurosat", data_root).split("train").content_hash == tr.content_hash
    assert src.metadata["sha256"].startswith("96cabcd7")
    assert src.metadata["variant"] == "rgb_4k_subset"
