"""SVFit: bit-exact at init, ranks by energy (checked with numpy), W(s) by a direct formula, ≥10× < LoRA."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fmlab.peft as fp
from fmlab.errors import ConfigError

from .nets import TinyAttnNet, make, tiny_timm_vit

VIT_LAYERS = ["*qkv", "*attn.proj", "*fc1", "*fc2"]


def _np_rank(w: np.ndarray, energy: float) -> int:
    s = np.linalg.svd(w.reshape(w.shape[0], -1).astype(np.float64), compute_uv=False)
    frac = np.cumsum(s**2) / np.sum(s**2)
    return int(np.argmax(frac >= energy - 1e-12)) + 1


@pytest.mark.parametrize("cls", ["conv", "attn"])
def test_outputs_equal_base_exactly_at_init(cls):
    base = make() if cls == "conv" else make(TinyAttnNet)
    x = torch.randn(3, 3, 8, 8)
    m = fp.apply(copy.deepcopy(base), "svfit")
    with torch.no_grad():
        torch.testing.assert_close(m(x), base(x), rtol=0, atol=1e-6)


def test_timm_vit_outputs_equal_base_at_init():
    base = tiny_timm_vit()
    x = torch.randn(2, 3, 32, 32)
    m = fp.apply(copy.deepcopy(base), "svfit", targets=VIT_LAYERS)
    with torch.no_grad():
        torch.testing.assert_close(m(x), base(x), rtol=0, atol=1e-5)


@pytest.mark.parametrize("energy", [0.5, 0.9, 0.99])
def test_energy_rank_and_trainable_count_match_numpy(energy):
    base = make(TinyAttnNet)
    m = fp.apply(copy.deepcopy(base), "svfit", energy=energy)
    slots = fp.adapter_stages(m)[0]["info"]["slots"]
    expect = {}
    for name, pname in [("patch", "weight"), ("attn", "in_proj_weight"),
                        ("attn.out_proj", "weight"), ("fc", "weight")]:
        w = getattr(base.get_submodule(name), pname).detach().numpy()
        expect[(name, pname)] = _np_rank(w, energy)
    assert {(s["module"], s["param"]): s["rank"] for s in slots} == expect
    assert fp.trainable_parameters(m) == sum(expect.values())


def test_fixed_rank_is_capped_by_the_matrix():
    m = fp.apply(make(), "svfit", rank=5)
    # conv1 (8×27), conv2 (8×72), fc (16×8): min dims 8, 8, 8 → 5 each
    assert fp.trainable_parameters(m) == 15
    m = fp.apply(make(), "svfit", rank=100)
    assert fp.trainable_parameters(m) == 8 + 8 + 8


def test_weight_follows_the_svfit_formula():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(7, 5), nn.Conv2d(3, 6, 3, padding=1))
    w_lin, w_conv = net[0].weight.detach().numpy().copy(), net[1].weight.detach().numpy().copy()
    fp.apply(net, "svfit", targets=["0", "1"], rank=3)
    new_s = {}
    with torch.no_grad():
        for i in range(2):
            p = net[i].parametrizations.weight[0]
            p.s.copy_(torch.rand(3) * 2)
            new_s[i] = p.s.detach().numpy().astype(np.float64)
    for i, w in ((0, w_lin), (1, w_conv)):
        m = w.reshape(w.shape[0], -1).astype(np.float64)
        u, s, vt = np.linalg.svd(m, full_matrices=False)
        residual = m - (u[:, :3] * s[:3]) @ vt[:3]
        want = residual + (u[:, :3] * new_s[i]) @ vt[:3]
        got = net[i].weight.detach().numpy().reshape(m.shape)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    x = torch.randn(2, 3, 5, 5)
    torch.testing.assert_close(net[1](x), F.conv2d(x, net[1].weight, net[1].bias, padding=1))


def test_only_singular_values_train_and_loss_falls():
    m = fp.apply(make(), "svfit", energy=0.9)
    trainable = [n for n, p in m.named_parameters() if p.requires_grad]
    assert trainable and all(n.endswith(".0.s") for n in trainable)
    # a target SVFit can reach: the same net with its singular values rescaled
    teacher = copy.deepcopy(m)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for n, p in teacher.named_parameters():
            if n.endswith(".s"):
                p.mul_(1 + 0.5 * torch.rand(p.shape, generator=g))
    x = torch.randn(16, 3, 8, 8, generator=g)
    with torch.no_grad():
        target = teacher(x)
    opt = torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=0.02)
    losses = []
    for _ in range(40):
        loss = F.mse_loss(m(x), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]


def test_merge_gives_plain_weights_with_the_same_outputs():
    m = fp.apply(make(TinyAttnNet), "svfit", rank=2)
    with torch.no_grad():
        for n, p in m.named_parameters():
            if n.endswith(".s"):
                p.mul_(1.5)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        before = m(x)
        fp.merge(m)
        after = m(x)
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-6)
    assert not any("parametrizations" in n for n, _ in m.named_parameters())


def test_svfit_trains_10x_fewer_than_lora_on_resnet20_and_vit():
    from fmlab.models import create_backbone

    bb = create_backbone("resnet20_cifar", weights=None)
    lora = fp.trainable_parameters(fp.apply(copy.deepcopy(bb), "lora", "trunk.*conv*", r=8))
    svfit = fp.trainable_parameters(fp.apply(copy.deepcopy(bb), "svfit", "trunk.*conv*"))
    assert svfit > 0 and lora >= 10 * svfit
    vit = tiny_timm_vit()
    lora = fp.trainable_parameters(fp.apply(copy.deepcopy(vit), "lora", VIT_LAYERS, r=8))
    svfit = fp.trainable_parameters(fp.apply(copy.deepcopy(vit), "svfit", VIT_LAYERS))
    assert svfit > 0 and lora >= 10 * svfit


def test_bad_options():
    with pytest.raises(ConfigError, match="energy must be in"):
        fp.apply(make(), "svfit", energy=0.0)
    with pytest.raises(ConfigError, match="rank must be a positive integer"):
        fp.apply(make(), "svfit", rank=0)
