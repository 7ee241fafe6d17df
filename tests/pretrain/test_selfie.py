"""Selfie: each masked slot's positive candidate is its own patch, patches are encoded one by
one, the summary sees visible patches only, and the selection loss falls."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fmlab.errors import ConfigError, DataError
from fmlab.models.resnet_cifar import ResNetCifarTrunk
from fmlab.pretrain import Selfie, selfie_loss
from fmlab.pretrain.selfie import cut_patches, masked_ids

from .conftest import head_tail, train_losses


def _selfie(**kw) -> Selfie:
    torch.manual_seed(0)
    return Selfie(ResNetCifarTrunk(depth=8, width=8), feature_dim=32, **kw)


def _mask(n: int, seed: int = 0, length: int = 16, masked: int = 8) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    ids = torch.rand(n, length, generator=g).argsort(1)[:, :masked]
    return torch.zeros(n, length, dtype=torch.bool).scatter_(1, ids, True)


def test_loss_is_cross_entropy_with_each_query_targeting_its_own_patch():
    g = torch.Generator().manual_seed(0)
    v, h = torch.randn(3, 5, 8, generator=g), torch.randn(3, 5, 8, generator=g)
    loss, acc = selfie_loss(v, h)
    logits = v @ h.transpose(1, 2)
    ref = -torch.log_softmax(logits, -1).diagonal(dim1=1, dim2=2).mean()
    assert float(loss) == pytest.approx(float(ref), rel=1e-6)
    assert float(acc) == pytest.approx(float((logits.argmax(-1) == torch.arange(5)).float().mean()))
    # queries pointing at their own candidate: the loss vanishes; at a shuffled one: it grows
    own, _ = selfie_loss(20 * F.normalize(h, dim=-1), F.normalize(h, dim=-1))
    other, _ = selfie_loss(20 * F.normalize(h.roll(1, dims=1), dim=-1), F.normalize(h, dim=-1))
    assert float(own) < 0.05 < 1.0 < float(other)


def test_candidates_are_the_masked_patches_encoded_alone_in_query_order():
    obj = _selfie().eval()
    x = torch.randn(2, 3, 32, 32)
    mask = _mask(2)
    with torch.no_grad():
        v, cand = obj.queries_and_candidates(x, mask)
        ids = masked_ids(mask)
        for i in range(2):
            for k in range(8):
                j = int(ids[i, k])
                r, c = divmod(j, 4)
                alone = obj.encoder(x[i:i + 1, :, 8 * r:8 * r + 8, 8 * c:8 * c + 8])
                torch.testing.assert_close(cand[i, k], alone[0], atol=1e-5, rtol=1e-5)
        # the query of slot k is u + pos_emb(position of k): the same u for every slot
        diff = v - obj.pos_embed[0, ids]
        torch.testing.assert_close(diff, diff[:, :1].expand_as(diff))


def test_summary_sees_only_the_visible_patches():
    obj = _selfie().eval()
    x = torch.randn(2, 3, 32, 32)
    mask = _mask(2, 1)
    px = F.interpolate(mask.view(2, 1, 4, 4).float(), size=(32, 32), mode="nearest")
    y = x + 3 * torch.randn_like(x) * px  # change the masked patches only
    with torch.no_grad():
        vx, cx = obj.queries_and_candidates(x, mask)
        vy, cy = obj.queries_and_candidates(y, mask)
    torch.testing.assert_close(vx, vy)  # queries unchanged
    assert float((cx - cy).abs().max()) > 1e-3  # candidates are the new patches


def test_patches_masks_and_errors():
    x = torch.arange(2 * 3 * 32 * 32.0).view(2, 3, 32, 32)
    p = cut_patches(x, 4)
    assert p.shape == (2, 16, 3, 8, 8) and torch.equal(p[1, 6], x[1, :, 8:16, 16:24])
    with pytest.raises(DataError, match="same number"):
        masked_ids(torch.tensor([[True, False], [True, True]]))
    with pytest.raises(ConfigError, match="fewer than 2"):
        _selfie(mask_ratio=0.05)  # 1 of 16 masked: a single candidate
    tf = Selfie.default_transform(32, grid=4, mask_ratio=0.5)
    b = tf({"images": torch.zeros(6, 32, 32, 3, dtype=torch.uint8)}, torch.Generator())
    assert b["mask"].shape == (6, 16) and b["mask"].sum(1).eq(8).all()
    obj = _selfie()
    _loss, logs = obj(b)
    assert float(logs["mask_ratio"]) == 0.5
    with pytest.raises(DataError, match="does not fit"):
        obj({"images": b["images"], "mask": torch.zeros(6, 9, dtype=torch.bool)})


def test_selfie_loss_falls():
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    base = torch.stack([yy * 7, xx * 7, 255 - (yy + xx) * 3], -1).float()
    images = (base[None] + torch.rand(16, 32, 32, 3, generator=g) * 40).clamp(0, 255)
    images = images.to(torch.uint8)
    obj = _selfie()
    tf = Selfie.default_transform(32, **obj.transform_arguments(), scale=(0.9, 1.0))
    first, last = head_tail(train_losses(obj, lambda s: tf({"images": images},
                                                          torch.Generator().manual_seed(s)),
                                         steps=30, lr=2e-3))
    assert last < 0.8 * first
