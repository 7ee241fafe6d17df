"""CroCo: the loss covers masked view-1 patches only, and the decoder reads view 2."""

from __future__ import annotations

import pytest
import torch

from fmlab.data.masks import random_patch_mask
from fmlab.data.pairs import PairTransform, warp_images
from fmlab.models.vit import VisionTransformer
from fmlab.pretrain import create_objective

pytestmark = pytest.mark.usefixtures("one_thread")


def _croco():
    torch.manual_seed(0)
    vit = VisionTransformer(img_size=16, patch_size=4, embed_dim=32, depth=1, num_heads=2)
    return create_objective("croco", encoder=vit, decoder_dim=32, decoder_depth=1,
                            decoder_heads=2)


def _batch(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    m = random_patch_mask(3, 16, 0.9, g)
    v1 = torch.randn(3, 3, 16, 16, generator=g)
    return {"images": v1, "images2": torch.randn(3, 3, 16, 16, generator=g),
            "ids_keep": m.ids_keep, "mask": m.mask}


def test_visible_view1_targets_do_not_change_the_loss():
    obj, batch = _croco(), _batch()
    base = obj(batch)[0]
    assert batch["ids_keep"].shape == (3, 1)  # floor(16 * 0.1): 90 % masked
    targets = batch["images"].clone()
    patches = obj.encoder.patchify(targets)
    rows = torch.arange(3)
    patches[rows, batch["ids_keep"][:, 0]] += 5.0  # every visible patch's target pixels
    moved = obj.encoder.unpatchify(patches)
    assert torch.equal(obj({**batch, "targets": moved})[0], base)
    masked = batch["mask"].float().argmax(1)  # one masked patch per image
    patches[rows, masked] += torch.randn(3, patches.shape[-1])
    assert not torch.allclose(obj({**batch, "targets": obj.encoder.unpatchify(patches)})[0], base)


def test_the_decoder_reads_view2():
    obj, batch = _croco(), _batch()
    base = obj(batch)[0]
    assert not torch.allclose(obj({**batch, "images2": batch["images2"].flip(-1)})[0], base)


def test_default_transform_gives_warped_pairs_and_a_90_percent_mask():
    tf = type(_croco()).default_transform(16, 4, mask_ratio=0.9)
    assert isinstance(tf, PairTransform)
    raw = {"images": torch.randint(0, 256, (4, 16, 16, 3), dtype=torch.uint8)}
    a, b = tf(raw, torch.Generator().manual_seed(1)), tf(raw, torch.Generator().manual_seed(1))
    assert torch.equal(a["images2"], b["images2"]) and torch.equal(a["warp"], b["warp"])
    assert torch.allclose(a["images2"], warp_images(a["images"], a["warp"]), atol=1e-6)
    assert a["mask"].float().mean() == 15 / 16
