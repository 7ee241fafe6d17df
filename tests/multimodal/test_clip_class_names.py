"""``data.class_names`` of ``fmlab clip train`` (and ``--class-names`` of zero-shot): captions
name the classes with the given words instead of the source's own names."""

from __future__ import annotations

import numpy as np
import pytest

from fmlab.errors import ConfigError
from fmlab.experiments.clip import ClipDataConfig, build_train_source, caption_class_names
from tests.conftest import make_npz


def test_class_names_replace_the_source_names_in_the_captions(tmp_path):
    npz = make_npz(tmp_path / "d.npz", n_classes=4)  # its own names: c0..c3
    cfg = ClipDataConfig(source=f"npz:{npz}", templates=["a {}."],
                         class_names=["zero", "one", "two", "three"], classes=["two", "zero"])
    src = build_train_source(cfg)
    assert src.captions == ["a two.", "a zero."]
    batch = src.get_batch(np.arange(len(src)))
    # every image is captioned with the word of its own class
    own = np.asarray(src.split.labels)[src.rows]
    words = [src.captions[i] for i in batch["caption_ids"].tolist()]
    assert words == [f"a {['zero', 'one', 'two', 'three'][c]}." for c in own]


@pytest.mark.parametrize("names", [["a", "b"], ["a", "b", "c", "a"]])
def test_class_names_must_be_one_distinct_word_per_class(names):
    with pytest.raises(ConfigError, match="data.class_names"):
        caption_class_names(["c0", "c1", "c2", "c3"], names, "data.class_names")
    assert caption_class_names(["c0", "c1"], [], "k") == ["c0", "c1"]


def test_shipped_mnist_judge_config_names_digits_as_the_gan_captions_do(monkeypatch):
    """configs/clip/mnist_digits.yaml: not LeNet-5 (the held-out judge), the GAN captions'
    number words, and the zero-shot templates file equals its training templates."""
    import json
    from pathlib import Path

    from fmlab.data.attributes import NUMBER_WORDS
    from fmlab.experiments.clip import load_clip_config

    root = Path(__file__).resolve().parents[2] / "configs" / "clip"
    monkeypatch.setenv("FMLAB_DATA", "/nonexistent")  # only parsed; nothing is read
    cfg = load_clip_config(root / "mnist_digits.yaml")
    assert cfg.model.image != "lenet5_mnist" and cfg.model.lock_text
    assert cfg.data.class_names == list(NUMBER_WORDS) and cfg.data.source == "mnist"
    assert cfg.data.split == "train"
    assert json.loads((root / "mnist_digits_templates.json").read_text()) == cfg.data.templates
