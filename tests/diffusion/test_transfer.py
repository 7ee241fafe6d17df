"""Diversion: learngenes copied and frozen, new tailors train; LoRA matched in trainable count."""

from __future__ import annotations

import pytest
import torch

import fmlab.peft as fp
from fmlab.diffusion.kind import kind_layers
from fmlab.diffusion.objective import DiffusionObjective
from fmlab.diffusion.schedule import NoiseSchedule
from fmlab.diffusion.unet import LayerFactory, UNet
from fmlab.experiments.diffusion_transfer import (
    dense_equivalent,
    learngene_net,
    lora_count,
    matched_lora_rank,
    matched_scratch_width,
)
from fmlab.diffusion.unet import group_norm

pytestmark = pytest.mark.usefixtures("one_thread")

META = {"layers": "kind", "ch": 16, "learngenes": 4, "tailors": 2, "classes": [0, 1, 2],
        "schedule": "linear", "steps": 10}


def _source() -> UNet:
    torch.manual_seed(0)
    return UNet(LayerFactory("kind", 4, 2, 3), ch=16)


def test_learngenes_are_copied_frozen_and_unchanged_by_a_step():
    src = _source()
    net = learngene_net(src, META, k=2, tailor_scale=0.1, seed=0)
    for a, b in zip(kind_layers(src), kind_layers(net)):
        assert torch.equal(a.u_g, b.u_g) and torch.equal(a.s_g, b.s_g) and torch.equal(a.v_g, b.v_g)
        assert b.u_t.shape[1] == 2 * 2 and b.gate.shape == (3, 4 + 4)
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    obj = DiffusionObjective(net, NoiseSchedule("linear", 10))
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-2)
    loss, _ = obj({"images": torch.randn(4, 1, 28, 28), "labels": torch.tensor([0, 1, 0, 1])})
    loss.backward()
    opt.step()
    changed = {n for n, p in net.named_parameters() if not torch.equal(p, before[n])}
    tailor = {n for n in before if n.rpartition(".")[2] in ("u_t", "s_t", "v_t")}
    assert changed and changed <= tailor | {"class_emb.weight"}
    assert "class_emb.weight" in changed and tailor & changed


def test_lora_rank_matches_learngene_trainable_count_within_ten_percent():
    src = _source()
    lg = learngene_net(src, META, k=2, tailor_scale=0.1, seed=0)
    target = fp.trainable_parameters(lg)
    dense = dense_equivalent(src, META, k=2)
    r = matched_lora_rank(dense, target)
    assert r == 4   # 2 classes x 2 tailors: LoRA's r·(m+n) vs the tailors' r·(m+n+1)
    fp.apply(dense, "lora", None, head="class_emb", r=r, alpha=r)
    got = fp.trainable_parameters(dense)
    assert got == lora_count(dense_equivalent(src, META, 2), r)   # the count is peft's own
    assert abs(got - target) / target < 0.10


def test_dense_equivalent_holds_the_learngene_only_weights():
    src = _source()
    dense = dense_equivalent(src, META, k=2)
    null = len(META["classes"])
    assert torch.allclose(dense.conv_in.weight, src.conv_in.dense_weight(null), atol=1e-6)
    assert torch.allclose(dense.time_mlp1.weight, src.time_mlp1.dense_weight(null), atol=1e-6)
    # with the same class embedding and the null class, both nets predict the same ε
    dense.class_emb.weight.data[-1] = src.class_emb.weight.data[-1]
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([1, 7])
    with torch.no_grad():
        a = src(x, t, torch.full((2,), null))
        b = dense(x, t, torch.full((2,), 2))
    assert torch.allclose(a, b, atol=1e-4)


def _count(ch: int, k: int) -> int:
    return sum(p.numel() for p in UNet(LayerFactory("dense", 1, 1, k), ch=ch).parameters())


@pytest.mark.parametrize("target", [5_000, 20_000, 51_454])
def test_matched_scratch_width_is_the_closest_dense_count(target):
    ch = matched_scratch_width(5, target)
    gap = abs(_count(ch, 5) - target)
    assert ch % 2 == 0
    assert all(gap <= abs(_count(c, 5) - target) for c in range(max(2, ch - 4), ch + 5, 2))


@pytest.mark.parametrize("c, groups", [(8, 8), (16, 8), (4, 4), (10, 5), (12, 6), (7, 7), (9, 3)])
def test_group_norm_uses_the_most_groups_up_to_eight_that_divide_the_width(c, groups):
    assert group_norm(c).num_groups == groups
