"""VPT on timm's VisionTransformer, fmlab's ViT and open_clip's tower, checked by a hand-written forward."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import fmlab.peft as fp
from fmlab.errors import ConfigError

from .nets import make, tiny_timm_vit


def _timm_by_hand(base: nn.Module, prompts: torch.Tensor, deep: bool, x: torch.Tensor):
    """VPT forward written out with the un-hooked base model's pieces."""
    n = prompts.shape[1]
    t = base.norm_pre(base.patch_drop(base._pos_embed(base.patch_embed(x))))
    k = base.num_prefix_tokens
    p = prompts.unsqueeze(1).expand(-1, t.shape[0], -1, -1)
    t = torch.cat([t[:, :k], p[0], t[:, k:]], dim=1)
    for i, blk in enumerate(base.blocks):
        if deep and i > 0:
            t = torch.cat([t[:, :k], p[i], t[:, k + n:]], dim=1)
        t = blk(t)
    t = torch.cat([t[:, :k], t[:, k + n:]], dim=1)
    return base.forward_head(base.norm(t))


@pytest.mark.parametrize("deep", [False, True])
def test_timm_vit_matches_hand_written_forward(deep):
    base = tiny_timm_vit(depth=3)
    m = fp.apply(copy.deepcopy(base), "vpt", num_tokens=4, deep=deep, seed=1)
    prompts = m.vpt_prompts.prompts
    assert prompts.shape == ((3 if deep else 1), 4, 192)
    assert fp.trainable_parameters(m) == prompts.numel()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        got = m(x)
        torch.testing.assert_close(got, _timm_by_hand(base, prompts, deep, x), rtol=1e-5,
                                   atol=1e-5)
        assert m.forward_features(x).shape == base.forward_features(x).shape
        assert not torch.allclose(got, base(x), atol=1e-4)  # the prompts do act


def test_prompts_and_head_train_backbone_frozen():
    m = fp.apply(tiny_timm_vit(), "vpt", num_tokens=3, deep=True, head="head")
    names = {n for n, p in m.named_parameters() if p.requires_grad}
    assert names == {"vpt_prompts.prompts", "head.weight", "head.bias"}
    assert fp.trainable_parameters(m) == 2 * 3 * 192 + 192 * 5 + 5
    m.train()
    m(torch.randn(2, 3, 32, 32)).sum().backward()
    assert m.vpt_prompts.prompts.grad.abs().sum() > 0


def test_fmlab_vit_shallow_and_deep():
    from fmlab.models.vit import VisionTransformer

    torch.manual_seed(0)
    base = VisionTransformer(img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=2).eval()
    x = torch.randn(3, 3, 16, 16)
    for deep in (False, True):
        m = fp.apply(copy.deepcopy(base), "vpt", num_tokens=2, deep=deep)
        p = m.vpt_prompts.prompts.unsqueeze(1).expand(-1, 3, -1, -1)
        with torch.no_grad():
            t = base._prefix(base.embed_patches(x))
            t = torch.cat([t[:, :1], p[0], t[:, 1:]], dim=1)
            for i, blk in enumerate(base.blocks):
                if deep and i > 0:
                    t = torch.cat([t[:, :1], p[i], t[:, 3:]], dim=1)
                t = blk(t)
            want = base.pool_tokens(base.norm(torch.cat([t[:, :1], t[:, 3:]], dim=1)))
            torch.testing.assert_close(m(x), want, rtol=1e-5, atol=1e-5)


def test_open_clip_tower_through_resblocks():
    from open_clip.transformer import VisionTransformer

    torch.manual_seed(0)
    tower = VisionTransformer(image_size=32, patch_size=8, width=64, layers=2, heads=2,
                              mlp_ratio=2.0, output_dim=32).eval()
    m = fp.apply(tower, "vpt", num_tokens=3, deep=True)
    assert m.vpt_prompts.prompts.shape == (2, 3, 64)
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 32)


def test_backbone_wrapper_is_searched_for_the_vit():
    holder = nn.Module()
    holder.trunk = tiny_timm_vit()
    fp.apply(holder, "vpt", num_tokens=2)
    assert fp.adapter_stages(holder)[0]["targets"] == ["trunk"]
    assert fp.trainable_parameters(holder) == 2 * 192


def test_deepcopy_keeps_hooks_on_the_copy():
    m = fp.apply(tiny_timm_vit(), "vpt", num_tokens=2)
    c = copy.deepcopy(m)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        before = m(x)
        c.vpt_prompts.prompts.mul_(3.0)
        assert torch.equal(m(x), before)
        assert not torch.allclose(c(x), before)


def test_errors():
    with pytest.raises(ConfigError, match="no ViT"):
        fp.apply(make(), "vpt")
    m = fp.apply(tiny_timm_vit(), "vpt", num_tokens=2)
    with pytest.raises(ConfigError, match="cannot be merged"):
        fp.merge(m)
    with pytest.raises(ConfigError, match="num_tokens must be a positive integer"):
        fp.apply(tiny_timm_vit(), "vpt", num_tokens=0)


def test_seed_fixes_the_prompts():
    a = fp.apply(tiny_timm_vit(), "vpt", seed=5).vpt_prompts.prompts
    b = fp.apply(tiny_timm_vit(), "vpt", seed=5).vpt_prompts.prompts
    c = fp.apply(tiny_timm_vit(), "vpt", seed=6).vpt_prompts.prompts
    assert torch.equal(a, b) and not torch.equal(a, c)
    bound = (6.0 / (3 * 8 * 8 + 192)) ** 0.5  # VPT's uniform init with patch 8
    assert a.abs().max() <= bound and a.abs().max() > 0.9 * bound
