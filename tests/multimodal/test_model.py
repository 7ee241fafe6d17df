"""ImageTextModel: locking, logit scale, optimiser groups, training through the engine, save/load."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fmlab.errors import ConfigError
from fmlab.multimodal.model import count_trainable, image_groups, lock_groups


def _numel(groups):
    return sum(p.numel() for g in groups for p in g)


def test_lock_text_whole_and_top_groups(tiny_model):
    groups = tiny_model.text.groups()
    assert len(groups) == 3  # embeddings + 2 layers
    total = count_trainable(tiny_model)
    tiny_model.lock_text(0)
    assert not any(p.requires_grad for p in tiny_model.text.parameters())
    assert count_trainable(tiny_model) == total - _numel(groups)
    assert tiny_model.text_locked and tiny_model.training and not tiny_model.text.training
    tiny_model.lock_text(1)
    assert count_trainable(tiny_model.text) == _numel(groups[-1])
    assert all(p.requires_grad for p in tiny_model.text_proj.parameters())


def test_lock_image_groups_and_bn_stats(tiny_model):
    groups = image_groups(tiny_model.image)
    # resnet depth 8: conv1, bn1, then one block per stage
    assert len(groups) == 5
    tiny_model.lock_image(2)
    assert count_trainable(tiny_model.image) == _numel(groups[-2:])
    tiny_model.train()
    bn1 = tiny_model.image.trunk.bn1
    assert not bn1.training  # locked BatchNorm keeps its running statistics
    before = bn1.running_mean.clone()
    tiny_model.encode_image(torch.randint(0, 255, (4, 32, 32, 3), dtype=torch.uint8))
    torch.testing.assert_close(bn1.running_mean, before)
    with pytest.raises(ConfigError, match="only 5"):
        lock_groups(groups, 6)


def test_logit_scale_init_clamp_and_no_decay(tiny_model):
    from fmlab.engine.optim import split_decay_params
    from fmlab.multimodal.objective import ContrastiveObjective

    assert tiny_model.logit_scale_value().item() == pytest.approx(1 / 0.07, rel=1e-6)
    with torch.no_grad():
        tiny_model.logit_scale.fill_(math.log(500.0))
    assert tiny_model.logit_scale_value().item() == pytest.approx(100.0, rel=1e-6)
    obj = ContrastiveObjective(tiny_model, ["a", "b"])
    obj.on_after_optimizer_step(0, 1)
    assert tiny_model.logit_scale.item() == pytest.approx(math.log(100.0), rel=1e-6)
    decay, no_decay = split_decay_params(obj)
    assert "model.logit_scale" in no_decay and "model.logit_scale" not in decay
    assert "model.image_proj.weight" in decay


def test_siglip_needs_bias(tiny_model):
    from fmlab.multimodal.objective import ContrastiveObjective

    with pytest.raises(ConfigError, match="logit bias"):
        ContrastiveObjective(tiny_model, ["a"], loss="siglip")


def _toy_pairs(n=16, seed=0):
    """Images whose colour encodes a word: learnable in a few steps."""
    from fmlab.data.sources import ArraySplit, ImageTextSplit

    colours = ["red", "green", "blue", "yellow"]
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 4
    palette = np.array([[220, 20, 20], [20, 220, 20], [20, 20, 220], [220, 220, 20]])
    imgs = (palette[y][:, None, None, :] + rng.integers(0, 30, (n, 32, 32, 3))).clip(0, 255)
    split = ArraySplit(imgs.astype(np.uint8), name="train", labels=y, class_names=colours,
                       content_hash="x", origin="toy")
    caps = [f"a {colours[c]} square" for c in y]
    return ImageTextSplit(split, caps, np.arange(n)), split


@pytest.mark.parametrize("loss,bias", [
    ("clip", None),
    pytest.param("siglip", -10.0, marks=pytest.mark.slow),
    pytest.param("multipos", None, marks=pytest.mark.slow),
])
def test_few_engine_steps_lower_the_loss(tiny_text_tower_factory, loss, bias):
    from fmlab.engine import OptimConfig, ScheduleConfig, Trainer, TrainerConfig
    from fmlab.models import create_backbone
    from fmlab.multimodal.data import ImageTextPairs, TemplateCaptions
    from fmlab.multimodal.model import ImageTextModel
    from fmlab.multimodal.objective import ContrastiveObjective

    torch.manual_seed(0)
    model = ImageTextModel(create_backbone("resnet_cifar", depth=8, width=8),
                           tiny_text_tower_factory(), 16, init_logit_scale=10.0 if bias else 1 / 0.07,
                           init_logit_bias=bias)
    model.lock_text(0)
    pairs, labelled = _toy_pairs()
    src = (TemplateCaptions(labelled, labelled.class_names, ["a {} square.", "{} thing"])
           if loss == "multipos" else ImageTextPairs(pairs))
    obj = ContrastiveObjective(model, src.captions, loss=loss)
    obj.on_train_start(1)
    batch = src.get_batch(np.arange(len(src)))
    with torch.no_grad():
        model.eval()
        before = obj(batch)[0].item()
    trainer = Trainer(obj, src, TrainerConfig(max_steps=25, batch_size=8, log_every=5,
                                              progress=False, tensorboard=False, device="cpu"),
                      OptimConfig(lr=3e-3, weight_decay=0.1), ScheduleConfig(name="constant"))
    trainer.fit()
    with torch.no_grad():
        model.eval()
        after = obj(batch)[0].item()
    assert after < 0.8 * before
    assert obj.text_cache.shape == (len(src.captions), 32)


def test_text_cache_equals_running_the_locked_tower(tiny_model):
    from fmlab.multimodal.objective import ContrastiveObjective

    tiny_model.lock_text(0)
    caps = ["a red square", "two green dogs on a sofa", "blue"]
    obj = ContrastiveObjective(tiny_model, caps)
    obj.on_train_start(1)
    ids = torch.tensor([2, 0, 1, 0])
    with torch.no_grad():
        cached = obj.text_features(ids)
        direct = tiny_model.encode_text([caps[i] for i in ids.tolist()])
    torch.testing.assert_close(cached, direct, atol=1e-5, rtol=1e-5)


def test_pairs_source_draws_each_images_captions(tiny_model):
    from fmlab.data.sources import ArraySplit, ImageTextSplit
    from fmlab.multimodal.data import ImageTextPairs

    imgs = np.zeros((3, 4, 4, 3), np.uint8)
    split = ImageTextSplit(ArraySplit(imgs, name="t", labels=None, class_names=None,
                                      content_hash="h", origin="o"),
                           ["a0", "b0", "a1", "b1", "c2"], np.array([0, 1, 0, 1, 2]))
    src = ImageTextPairs(split)
    torch.manual_seed(0)
    seen = set()
    for _ in range(30):
        b = src.get_batch(np.arange(3))
        for row, cid in zip(b["labels"].tolist(), b["caption_ids"].tolist()):
            assert split.caption_image_index[cid] == row
            seen.add(cid)
    assert seen == {0, 1, 2, 3, 4}


def test_save_load_round_trip(tmp_path, monkeypatch, tiny_text_tower_factory):
    from fmlab.models import create_backbone
    from fmlab.multimodal import io as mio
    from fmlab.multimodal.model import ImageTextModel, ImageTextSpec

    spec = ImageTextSpec(image="resnet_cifar", text="text:tiny", embed_dim=16)
    monkeypatch.setattr("fmlab.multimodal.model.text_tower",
                        lambda name, max_length=32: tiny_text_tower_factory(seed=1))

    def from_spec(cls, s, load_image_weights=True):
        torch.manual_seed(5)
        m = cls(create_backbone("resnet_cifar", depth=8, width=8), tiny_text_tower_factory(1), 16,
                spec=s)
        return m

    monkeypatch.setattr(ImageTextModel, "from_spec", classmethod(from_spec))
    m = ImageTextModel.from_spec(spec)
    with torch.no_grad():
        m.image_proj.weight.mul_(3)
        m.logit_scale.fill_(2.5)
    mio.save_image_text_model(m, tmp_path)
    loaded = mio.load_image_text_model(tmp_path)
    torch.testing.assert_close(loaded.image_proj.weight, m.image_proj.weight)
    assert loaded.logit_scale.item() == pytest.approx(2.5)
