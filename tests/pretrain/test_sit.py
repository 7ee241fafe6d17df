"""SiT: corruption masks the declared fraction in groups, rotation labels match the applied
rotation, the weighting follows its formula, and the loss falls."""

from __future__ import annotations

import pytest
import torch

from fmlab.errors import ConfigError, DataError
from fmlab.models.vit import VisionTransformer
from fmlab.pretrain import SiT
from fmlab.pretrain.sit import group_mask, rotate_batch, sit_corrupt, uncertainty_sum

from .conftest import head_tail, train_losses


def _vit(**kw) -> VisionTransformer:
    torch.manual_seed(0)
    return VisionTransformer(img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=2, **kw)


@pytest.mark.parametrize("ratio", [0.25, 0.5, 0.7])
def test_group_mask_covers_the_declared_fraction_in_connected_groups(ratio):
    m = group_mask(2000, 8, ratio, torch.Generator().manual_seed(0))
    assert m.sum(1).eq(round(64 * ratio)).all()  # every image, exactly
    assert float(m.float().mean()) == pytest.approx(round(64 * ratio) / 64)
    # groups: a masked patch's right/lower neighbours are masked far more often than chance
    grid = m.view(-1, 8, 8)
    same = (grid[:, :, 1:] & grid[:, :, :-1]).sum() + (grid[:, 1:] & grid[:, :-1]).sum()
    pairs = (grid[:, :, 1:] | grid[:, :, :-1]).sum() + (grid[:, 1:] | grid[:, :-1]).sum()
    frac = ratio * (round(64 * ratio) - 1) / 63 / (1 - (1 - ratio) ** 2)  # i.i.d. expectation
    assert float(same) / float(pairs) > frac + 0.15
    with pytest.raises(ConfigError, match="corrupt_ratio"):
        group_mask(1, 8, 1.0, torch.Generator())


def test_corruption_replaces_exactly_the_masked_patches_of_the_rotated_view():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 3, 16, 16, generator=g)
    out = sit_corrupt(x, 4, 0.5, 0.5, torch.Generator().manual_seed(2))
    k = out["rot_labels"]
    assert set(k.tolist()) == {0, 1, 2, 3}
    for i in range(64):  # the label is the rotation applied: undoing it gives the input back
        assert torch.equal(torch.rot90(out["clean"][i], -int(k[i]), dims=(1, 2)), x[i])
    px = out["corrupt_mask"].view(64, 1, 4, 4).repeat_interleave(4, 2).repeat_interleave(4, 3)
    px = px.expand_as(x)
    assert torch.equal(out["corrupted"][~px], out["clean"][~px])
    assert bool((out["corrupted"][px] != out["clean"][px]).all())
    assert out["corrupt_mask"].float().mean() == 0.5
    again = sit_corrupt(x, 4, 0.5, 0.5, torch.Generator().manual_seed(2))
    assert all(torch.equal(out[key], again[key]) for key in out)  # seeded
    with pytest.raises(DataError, match="square"):
        sit_corrupt(torch.zeros(1, 3, 16, 8), 4, 0.5, 0.5, g)


def test_rotate_batch_rotates_each_image_by_its_own_label():
    x = torch.randn(8, 2, 5, 5)
    k = torch.tensor([0, 1, 2, 3, 3, 2, 1, 0])
    out = rotate_batch(x, k)
    for i in range(8):
        assert torch.equal(out[i], torch.rot90(x[i], int(k[i]), dims=(1, 2)))


def test_weightings():
    losses, s = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0.0, 1.0, -1.0])
    ref = sum(0.5 * torch.exp(-s[i]) * losses[i] + 0.5 * s[i] for i in range(3))
    assert float(uncertainty_sum(losses, s)) == pytest.approx(float(ref))
    obj = SiT(_vit(), weighting="fixed", recon_weight=2.0, rot_weight=0.5, contrast_weight=0.0)
    tf = SiT.default_transform(16, patch_size=4)
    b = tf({"images": torch.randint(0, 255, (6, 16, 16, 3), dtype=torch.uint8)},
           torch.Generator().manual_seed(0))
    with torch.no_grad():
        loss, logs = obj.eval()(b)
    assert float(loss) == pytest.approx(2 * float(logs["recon_l1"]) + 0.5 * float(logs["rot_ce"]))
    assert not obj.log_vars.requires_grad
    with pytest.raises(ConfigError, match="weighting"):
        SiT(_vit(), weighting="learned")
    with pytest.raises(ConfigError, match="class token"):
        SiT(_vit(class_token=False, pool="mean"))


def test_transform_outputs_and_the_encoder_cls_token_is_the_contrastive_token():
    tf = SiT.default_transform(16, patch_size=4, corrupt_ratio=0.25)
    b = tf({"images": torch.randint(0, 255, (4, 16, 16, 3), dtype=torch.uint8)},
           torch.Generator().manual_seed(0))
    assert len(b["views"]) == len(b["corrupted"]) == len(b["rot_labels"]) == 2
    assert all(m.sum(1).eq(4).all() for m in b["corrupt_mask"])
    obj = SiT(_vit()).eval()
    with torch.no_grad():
        t = obj.tokens(b["corrupted"][0])
    assert t.shape == (4, 2 + 16, 32)
    assert obj.encoder.cls_token is not None and obj.rot_token.shape == (1, 1, 32)


def test_sit_loss_falls():
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(16), torch.arange(16), indexing="ij")
    base = torch.stack([yy * 15, xx * 15, (yy + xx) * 7], -1).float()
    images = (base[None] + torch.rand(16, 16, 16, 3, generator=g) * 60).clamp(0, 255)
    images = images.to(torch.uint8)
    obj = SiT(_vit(), proj_hidden_dim=32, proj_dim=16)
    tf = SiT.default_transform(16, patch_size=4)
    first, last = head_tail(train_losses(obj, lambda s: tf({"images": images},
                                                          torch.Generator().manual_seed(s)),
                                         steps=30, lr=2e-3))
    assert last < 0.9 * first
