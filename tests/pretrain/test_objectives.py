"""Registry, supervised baseline, the engine contract (embed on uint8, hooks), Backbone input."""

from __future__ import annotations

import pytest
import torch

from fmlab.errors import ConfigError, FmlabError
from fmlab.models.vit import VisionTransformer
from fmlab.pretrain import OBJECTIVES, Supervised, create_objective

from .conftest import TinyCNN, clustered_images, head_tail, train_losses

NAMES = ["dino", "distill", "look", "mae", "moco", "mp3", "simclr", "supervised"]


def test_registry_has_every_objective_and_unknown_names_list_them():
    assert set(NAMES) <= set(OBJECTIVES.names())
    obj = create_objective("simclr", encoder=TinyCNN(), proj_hidden_dim=16, proj_dim=8)
    assert obj.name == "simclr" and obj.temperature == 0.2
    with pytest.raises(FmlabError, match="simclr"):
        create_objective("simclr2")


def test_supervised_loss_falls_and_reports_accuracy():
    images, labels = clustered_images(64, 4)
    torch.manual_seed(0)
    obj = Supervised(TinyCNN(), num_classes=4)
    tf = Supervised.default_transform(16)

    def batch(step: int) -> dict:
        return tf({"images": images, "labels": labels}, torch.Generator().manual_seed(step))

    first, last = head_tail(train_losses(obj, batch, steps=30, lr=3e-3))
    assert last < 0.5 * first
    _, logs = obj(batch(0))
    assert float(logs["acc"]) > 0.5


def test_embed_preprocesses_uint8_and_feature_dim_is_required():
    torch.manual_seed(0)
    vit = VisionTransformer(img_size=16, patch_size=4, embed_dim=32, depth=1, num_heads=2)
    obj = create_objective("mae", encoder=vit, decoder_dim=16, decoder_depth=1,
                           decoder_heads=2).eval()
    raw = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)  # grey, other size
    with torch.no_grad():
        assert obj.embed(raw).shape == (3, 32)
        assert obj.embed(torch.rand(3, 3, 16, 16)).shape == (3, 32)
    with pytest.raises(ConfigError, match="feature_dim"):
        Supervised(torch.nn.Conv2d(3, 4, 3), num_classes=3)


def test_backbone_from_the_model_registry_is_accepted():
    models = pytest.importorskip("fmlab.models")
    bb = models.create_backbone("resnet20_cifar", weights=None)
    obj = create_objective("simclr", encoder=bb, proj_hidden_dim=32, proj_dim=16)
    assert obj.encoder is bb.trunk and obj.feature_dim == bb.feature_dim
    assert obj.preprocess is bb.preprocess
    obj.eval()
    with torch.no_grad():
        feats = obj.embed(torch.randint(0, 256, (2, 32, 32, 3), dtype=torch.uint8))
    assert feats.shape == (2, bb.feature_dim)


def test_vit_backbone_from_the_model_registry_feeds_mae_and_mp3():
    models = pytest.importorskip("fmlab.models")
    torch.manual_seed(0)
    bb = models.create_backbone("vit_tiny_cifar", img_size=16, embed_dim=32, depth=1,
                                num_heads=2)
    mae = create_objective("mae", encoder=bb, decoder_dim=16, decoder_depth=1, decoder_heads=2)
    assert mae.encoder is bb.trunk and mae.preprocess is bb.preprocess
    loss, _ = mae({"images": torch.rand(2, 3, 16, 16)})
    assert loss.ndim == 0
    with pytest.raises(ConfigError, match="pos_embed=False"):
        create_objective("mp3", encoder=bb)
    bb_nope = models.create_backbone("vit_tiny_cifar", img_size=16, embed_dim=32, depth=1,
                                     num_heads=2, pos_embed=False)
    mp3 = create_objective("mp3", encoder=bb_nope)
    assert mp3({"images": torch.rand(2, 3, 16, 16)})[0].ndim == 0
