"""MP3: cross-entropy over positions, context subsets, no position embeddings, falling loss."""

from __future__ import annotations

import math

import pytest
import torch

from fmlab.data import augment as A
from fmlab.errors import ConfigError
from fmlab.models.vit import VisionTransformer
from fmlab.pretrain import MP3, position_loss

from .conftest import head_tail, train_losses


def _vit(**kw) -> VisionTransformer:
    torch.manual_seed(0)
    kw.setdefault("pos_embed", False)
    return VisionTransformer(img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=2, **kw)


def test_position_loss_is_cross_entropy_over_positions():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 5, generator=g)
    loss, acc = position_loss(logits)
    total, hits = 0.0, 0
    for n in range(2):
        for i in range(5):
            row = logits[n, i]
            total += -(float(row[i]) - math.log(float(row.exp().sum())))
            hits += int(int(row.argmax()) == i)
    assert float(loss) == pytest.approx(total / 10, rel=1e-5)
    assert float(acc) == pytest.approx(hits / 10)


def test_mp3_predicts_every_token_from_the_context_and_is_equivariant():
    obj = MP3(_vit(), mask_ratio=0.5).eval()
    x = torch.rand(2, 3, 16, 16)
    ctx = torch.tensor([[0, 2, 4, 6, 8, 10, 12, 14], [1, 3, 5, 7, 9, 11, 13, 15]])
    with torch.no_grad():
        logits = obj.position_logits(x, ctx)
        assert logits.shape == (2, 16, 16)
        perm = torch.randperm(16, generator=torch.Generator().manual_seed(2))
        xp = obj.encoder.unpatchify(obj.encoder.patchify(x)[:, perm])
        logits_p = obj.position_logits(xp, perm.argsort()[ctx])
    # permuting the patches permutes the query outputs: position must come from content
    assert torch.allclose(logits_p, logits[:, perm], atol=1e-5)
    loss, logs = obj({"images": x, "context_ids": ctx})
    assert float(loss.detach()) == pytest.approx(float(position_loss(logits)[0]), rel=1e-5)
    assert 0.0 <= float(logs["pos_acc"]) <= 1.0


def test_mp3_needs_a_vit_without_position_embeddings():
    with pytest.raises(ConfigError, match="pos_embed=False"):
        MP3(_vit(pos_embed=True))
    with pytest.raises(ConfigError, match="mask_ratio"):
        MP3(_vit(), mask_ratio=1.0)


def test_mp3_loss_falls_well_below_chance():
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(16), torch.arange(16), indexing="ij")
    base = torch.stack([yy * 15, xx * 15, (yy + xx) * 7], -1).float()
    images = (base[None] + torch.rand(32, 16, 16, 3, generator=g) * 40).clamp(0, 255)
    images = images.to(torch.uint8)
    obj = MP3(_vit(), mask_ratio=0.75)
    tf = A.BatchTransform({"images": A.Compose([A.Normalize()])})
    default = MP3.default_transform(16, 4, mask_ratio=0.75)
    assert default({"images": images}, torch.Generator())["context_ids"].shape == (32, 4)

    def batch(step: int) -> dict:
        return tf({"images": images}, torch.Generator().manual_seed(step))

    first, last = head_tail(train_losses(obj, batch, steps=40))
    assert first > 0.8 * math.log(16) and last < 0.5 * math.log(16)
