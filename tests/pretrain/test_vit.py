"""The small ViT: patch layout, visible-token encoding (MAE), context attention (MP3)."""

from __future__ import annotations

import pytest
import torch

from fmlab.errors import ConfigError, DataError
from fmlab.models.vit import VisionTransformer, sincos_pos_embed_2d


@pytest.fixture(autouse=True)
def _no_grad():
    with torch.no_grad():
        yield


def _vit(**kw) -> VisionTransformer:
    torch.manual_seed(0)
    base = {"img_size": 16, "patch_size": 4, "embed_dim": 32, "depth": 2, "num_heads": 2}
    base.update(kw)
    return VisionTransformer(**base).eval()


def test_patchify_layout_and_round_trip():
    vit = _vit(in_chans=3)
    x = torch.rand(2, 3, 16, 16)
    p = vit.patchify(x)
    assert p.shape == (2, 16, 48)
    # patch (row 1, col 2) flattened in (row, col, channel) order
    ref = x[:, :, 4:8, 8:12].permute(0, 2, 3, 1).reshape(2, -1)
    assert torch.equal(p[:, 1 * 4 + 2], ref)
    assert torch.equal(vit.unpatchify(p), x)


def test_defaults_and_pooling():
    vit = VisionTransformer()
    assert (vit.img_size, vit.patch_size, vit.embed_dim, len(vit.blocks)) == (32, 4, 192, 6)
    assert vit.num_patches == 64 and vit.feature_dim == 192
    mean_vit = _vit(pool="mean", class_token=False)
    x = torch.rand(3, 3, 16, 16)
    tokens = mean_vit.forward_tokens(x)
    assert tokens.shape == (3, 16, 32)
    assert torch.allclose(mean_vit(x), tokens.mean(1))
    with pytest.raises(ConfigError, match="class_token"):
        VisionTransformer(pool="cls", class_token=False)


def test_keeping_all_tokens_equals_the_full_forward():
    vit = _vit()
    x = torch.rand(2, 3, 16, 16)
    full = vit.forward_tokens(x)
    all_ids = torch.arange(16).expand(2, 16)
    assert torch.allclose(vit.forward_tokens(x, ids_keep=all_ids), full, atol=1e-5)
    assert torch.allclose(vit.forward_tokens(x, context_ids=all_ids), full, atol=1e-5)


def test_visible_tokens_see_only_visible_patches():
    vit = _vit()
    x = torch.rand(1, 3, 16, 16)
    keep = torch.tensor([[0, 5, 10, 15]])
    out = vit.forward_tokens(x, ids_keep=keep)
    assert out.shape == (1, 1 + 4, 32)
    y = x.clone()
    y[:, :, 0:4, 4:8] += 1.0  # patch 1 is masked: the encoder must not notice
    assert torch.allclose(vit.forward_tokens(y, ids_keep=keep), out, atol=1e-6)


def test_context_attention_non_context_tokens_only_affect_themselves():
    vit = _vit(pos_embed=False)
    x = torch.rand(1, 3, 16, 16)
    ctx = torch.tensor([[0, 3, 6, 9, 12, 15]])
    out = vit.forward_tokens(x, context_ids=ctx)
    y = x.clone()
    y[:, :, 0:4, 4:8] += 1.0  # patch 1 is a query only
    out2 = vit.forward_tokens(y, context_ids=ctx)
    changed = (out2 - out).abs().amax(-1)[0]  # per token (cls first)
    assert changed[2] > 1e-3  # patch 1 itself
    others = torch.cat([changed[:2], changed[3:]])
    assert float(others.max()) < 1e-5


def test_without_pos_embed_the_model_is_permutation_equivariant():
    vit = _vit(pos_embed=False)
    x = torch.rand(2, 3, 16, 16)
    perm = torch.randperm(16, generator=torch.Generator().manual_seed(1))
    xp = vit.unpatchify(vit.patchify(x)[:, perm])
    ctx = torch.tensor([[1, 4, 7, 8, 13], [0, 2, 5, 11, 14]])
    inv = perm.argsort()
    out = vit.forward_tokens(x, context_ids=ctx)[:, 1:]
    outp = vit.forward_tokens(xp, context_ids=inv[ctx])[:, 1:]
    assert torch.allclose(outp, out[:, perm], atol=1e-5)
    with_pe = _vit(pos_embed=True)
    assert not torch.allclose(with_pe.forward_tokens(xp)[:, 1:],
                              with_pe.forward_tokens(x)[:, 1:][:, perm], atol=1e-3)


def test_other_resolutions_interpolate_positions_and_errors():
    vit = _vit()
    assert vit(torch.rand(2, 3, 8, 8)).shape == (2, 32)
    with pytest.raises(DataError, match="expects"):
        vit(torch.rand(2, 1, 16, 16))
    with pytest.raises(ConfigError, match="multiple"):
        VisionTransformer(img_size=30, patch_size=4)


def test_sincos_embeddings_are_distinct_per_position():
    pe = sincos_pos_embed_2d(32, 4, 4)
    assert pe.shape == (16, 32)
    d = torch.cdist(pe, pe) + torch.eye(16) * 1e3
    assert float(d.min()) > 0.1
