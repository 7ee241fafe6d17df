"""LoRA through peft: zero change at init, y = W₀x + (α/r)·B A x checked by hand, merge, peft interop."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fmlab.peft as fp
from fmlab.errors import ConfigError

from .nets import TinyAttnNet, make, train_steps


def _lora_weights(layer: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    return layer.lora_A["default"].weight, layer.lora_B["default"].weight


@pytest.mark.parametrize("cls", ["conv", "attn"])
def test_outputs_equal_base_before_training(cls):
    base = make() if cls == "conv" else make(TinyAttnNet)
    x = torch.randn(3, 3, 8, 8)
    m = fp.apply(copy.deepcopy(base), "lora", r=4, alpha=8)
    with torch.no_grad():
        torch.testing.assert_close(m(x), base(x), rtol=0, atol=1e-5)


def test_trainable_count_matches_hand_count():
    # conv1: A (2,3,3,3) + B (8,2,1,1); conv2: A (2,8,3,3) + B (8,2,1,1); fc: A (2,8) + B (16,2)
    m = fp.apply(make(), "lora", r=2)
    assert fp.trainable_parameters(m) == (54 + 16) + (144 + 16) + (16 + 32)
    # MultiheadAttention (dim 8): in_proj A (2,8) + B (24,2), out_proj A (2,8) + B (8,2)
    m = fp.apply(make(TinyAttnNet), "lora", targets="attn", r=2)
    assert fp.trainable_parameters(m) == 16 + 48 + 16 + 16
    assert all("lora_" in n for n, p in m.named_parameters() if p.requires_grad)


def test_linear_and_conv_match_the_formula():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 5), nn.Conv2d(2, 4, 3, stride=2, padding=1))
    plain = copy.deepcopy(net)
    fp.apply(net, "lora", targets=["0", "1"], r=3, alpha=6, init=False)  # B random: a real update
    scale = 6 / 3
    x = torch.randn(4, 6)
    a, b = _lora_weights(net[0])
    want = F.linear(x, plain[0].weight, plain[0].bias) + scale * (x @ a.T @ b.T)
    torch.testing.assert_close(net[0](x), want, rtol=1e-5, atol=1e-5)
    xi = torch.randn(2, 2, 7, 7)
    a, b = _lora_weights(net[1])
    low = F.conv2d(xi, a, stride=2, padding=1)
    want = plain[1](xi) + scale * F.conv2d(low, b)
    torch.testing.assert_close(net[1](xi), want, rtol=1e-5, atol=1e-5)


def test_multihead_attention_matches_updated_weights():
    torch.manual_seed(0)
    holder = nn.Module()
    holder.attn = nn.MultiheadAttention(8, 2, batch_first=True)
    plain = copy.deepcopy(holder.attn)
    fp.apply(holder, "lora", targets="attn", r=2, alpha=4, init=False)
    scale = 2.0
    a_in, b_in = _lora_weights(holder.attn)
    a_out, b_out = _lora_weights(holder.attn.base_layer.out_proj)
    with torch.no_grad():
        plain.in_proj_weight += scale * b_in @ a_in
        plain.out_proj.weight += scale * b_out @ a_out
    x = torch.randn(2, 5, 8)
    w_in = holder.attn.base_layer.in_proj_weight
    got = holder.attn(x, x, x, need_weights=False)[0]
    torch.testing.assert_close(got, plain(x, x, x, need_weights=False)[0], rtol=1e-5, atol=1e-5)
    # the forward's temporary merge gives back the very same frozen tensor (no W + Δ − Δ drift)
    assert holder.attn.base_layer.in_proj_weight is w_in and not w_in.requires_grad


def test_rslora_scale_is_alpha_over_sqrt_r():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 5))
    plain = copy.deepcopy(net)
    fp.apply(net, "lora", targets="0", r=4, alpha=6, use_rslora=True, init=False)
    a, b = _lora_weights(net[0])
    x = torch.randn(3, 6)
    want = plain(x) + (6 / 2) * (x @ a.T @ b.T)
    torch.testing.assert_close(net(x), want, rtol=1e-5, atol=1e-5)


def test_merge_folds_into_plain_layers():
    m = fp.apply(make(TinyAttnNet), "lora", r=2, init=False)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        before = m(x)
        fp.merge(m)
        after = m(x)
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)
    assert not any("lora" in n or "base_layer" in n for n, _ in m.named_parameters())
    assert type(m.attn) is nn.MultiheadAttention and type(m.fc) is nn.Linear
    with pytest.raises(ConfigError, match="merged"):
        fp.save_adapter(m, "unused")


def test_seed_fixes_the_init():
    a1 = _lora_weights(fp.apply(make(), "lora", r=2, seed=3).fc)[0]
    a2 = _lora_weights(fp.apply(make(), "lora", r=2, seed=3).fc)[0]
    a3 = _lora_weights(fp.apply(make(), "lora", r=2, seed=4).fc)[0]
    assert torch.equal(a1, a2) and not torch.equal(a1, a3)


def test_attention_out_proj_alone_is_refused():
    with pytest.raises(ConfigError, match=r"'attn.out_proj'.*target the attention module 'attn'"):
        fp.apply(make(TinyAttnNet), "lora", targets="attn.out_proj")


def test_directory_is_a_valid_peft_adapter(tmp_path):
    from peft import PeftModel

    # Not the attention: plain peft 0.21 doubles the MHA out_proj update (see fmlab.peft.lora).
    m = fp.apply(make(TinyAttnNet), "lora", targets=["patch", "fc"], r=2, alpha=4, dropout=0.1)
    x = torch.randn(4, 3, 8, 8)
    train_steps(m, x)
    with torch.no_grad():
        want = m(x)
    fp.save_adapter(m, tmp_path / "ad")
    assert (tmp_path / "ad" / "adapter_config.json").is_file()
    pm = PeftModel.from_pretrained(make(TinyAttnNet), tmp_path / "ad").eval()
    with torch.no_grad():
        torch.testing.assert_close(pm(x), want, rtol=1e-5, atol=1e-5)


def test_open_clip_tower_attention():
    from open_clip.transformer import VisionTransformer

    torch.manual_seed(0)
    base = VisionTransformer(image_size=32, patch_size=8, width=64, layers=2, heads=2,
                             mlp_ratio=2.0, output_dim=32).eval()
    m = fp.apply(copy.deepcopy(base), "lora", targets=["*.attn", "*c_fc"], r=4)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(m(x), base(x), rtol=0, atol=1e-5)
    targets = fp.adapter_stages(m)[0]["targets"]
    assert "transformer.resblocks.0.attn" in targets and len(targets) == 4
    m.train()
    loss = m(x).pow(2).mean()
    loss.backward()
    grads = [p.grad for n, p in m.named_parameters() if "lora_B" in n and "attn" in n]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)
