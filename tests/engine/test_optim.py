"""Schedules, the no-weight-decay split, LARS against its formula, EMA."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from fmlab.engine.config import OptimConfig
from fmlab.engine.ema import EMA
from fmlab.engine.optim import LARS, build_optimizer, param_groups, split_decay_params
from fmlab.engine.schedule import LRSchedule, cosine_momentum, warmup_cosine
from fmlab.errors import ConfigError


def test_warmup_then_cosine_values():
    base, final, warm, total = 0.4, 0.01, 4, 14
    lrs = [warmup_cosine(s, total, base, final, warm) for s in range(total)]
    # warmup: linear, first step already moves, last warmup step at base
    assert lrs[:4] == pytest.approx([0.1, 0.2, 0.3, 0.4])
    for s in range(warm, total):  # the half cosine written out
        t = (s - warm) / (total - warm)
        assert lrs[s] == pytest.approx(final + (base - final) * (1 + math.cos(math.pi * t)) / 2)
    assert all(a >= b for a, b in itertools.pairwise(lrs[4:]))  # monotone decay
    assert lrs[-1] > final
    assert warmup_cosine(total, total, base, final, warm) == pytest.approx(final)
    assert warmup_cosine(9, 14, base, final, warm, cosine=False) == base


def test_schedule_sets_group_lr_and_weight_decay():
    model = nn.Sequential(nn.Linear(3, 3), nn.LayerNorm(3))
    opt = build_optimizer(model, OptimConfig(name="sgd", lr=1.0, weight_decay=0.04))
    opt.param_groups[1]["lr_scale"] = 0.5
    sched = LRSchedule(1.0, total_steps=10, warmup_steps=0, min_lr=0.0, base_wd=0.04,
                       final_wd=0.4)
    lr = sched.apply(opt, 5)
    assert lr == pytest.approx(0.5)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5)
    assert opt.param_groups[1]["lr"] == pytest.approx(0.25)
    assert opt.param_groups[0]["weight_decay"] == pytest.approx(0.4 + (0.04 - 0.4) * 0.5)
    assert opt.param_groups[1]["weight_decay"] == 0.0  # no-decay group never decays
    with pytest.raises(ConfigError, match="warmup_steps"):
        LRSchedule(1.0, total_steps=5, warmup_steps=5)


def test_cosine_momentum():
    assert cosine_momentum(0, 100, 0.996) == pytest.approx(0.996)
    assert cosine_momentum(50, 100, 0.996) == pytest.approx(0.998)
    assert cosine_momentum(100, 100, 0.996) == pytest.approx(1.0)


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 2)
        self.ln = nn.LayerNorm(2)
        self.logit_scale = nn.Parameter(torch.ones(()))
        self.temperature_log = nn.Parameter(torch.zeros(1, 1))  # 2-D, excluded by name
        self.pos_embed = nn.Parameter(torch.zeros(1, 3, 2))  # excluded via no_weight_decay()
        self.frozen = nn.Parameter(torch.zeros(2, 2), requires_grad=False)

    def no_weight_decay(self):
        return {"pos_embed"}


def test_no_decay_split():
    decay, no_decay = split_decay_params(_Net())
    assert sorted(decay) == ["conv.weight", "fc.weight"]
    assert sorted(no_decay) == sorted(["conv.bias", "bn.weight", "bn.bias", "fc.bias", "ln.weight",
                                       "ln.bias", "logit_scale", "temperature_log", "pos_embed"])
    groups = param_groups(_Net(), 0.1)
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0]
    assert [g["lars_adapt"] for g in groups] == [True, False]
    with pytest.raises(ConfigError, match="no trainable"):
        param_groups(nn.Linear(2, 2).requires_grad_(False), 0.1)


def test_adamw_decays_only_decay_group():
    net = _Net()
    opt = build_optimizer(net, OptimConfig(name="adamw", lr=0.1, weight_decay=0.5))
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    for p in net.parameters():
        p.grad = torch.zeros_like(p)  # zero gradient: only decoupled decay can move weights
    opt.step()
    after = dict(net.named_parameters())
    assert torch.allclose(after["fc.weight"], before["fc.weight"] * (1 - 0.1 * 0.5))
    assert torch.equal(after["ln.weight"], before["ln.weight"])
    assert torch.equal(after["logit_scale"], before["logit_scale"])


def _lars_reference(w, g, buf, lr, wd, eta, mom, adapt):
    """One LARS step written out with plain tensor maths."""
    u = g + wd * w
    if adapt and w.norm() > 0 and u.norm() > 0:
        u = u * (eta * w.norm() / u.norm())
    buf = u.clone() if buf is None else mom * buf + u
    return w - lr * buf, buf


def test_lars_matches_formula():
    gen = torch.Generator().manual_seed(0)
    w1 = torch.randn(5, 4, generator=gen)
    w2 = torch.randn(4, generator=gen)
    p1, p2 = nn.Parameter(w1.clone()), nn.Parameter(w2.clone())
    lr, wd, eta, mom = 0.5, 0.01, 0.02, 0.9
    opt = LARS([{"params": [p1], "weight_decay": wd, "lars_adapt": True},
                {"params": [p2], "weight_decay": 0.0, "lars_adapt": False}],
               lr=lr, momentum=mom, eta=eta)
    r1, r2, b1, b2 = w1.clone(), w2.clone(), None, None
    for _ in range(3):
        g1, g2 = torch.randn(5, 4, generator=gen), torch.randn(4, generator=gen)
        p1.grad, p2.grad = g1.clone(), g2.clone()
        opt.step()
        r1, b1 = _lars_reference(r1, g1, b1, lr, wd, eta, mom, True)
        r2, b2 = _lars_reference(r2, g2, b2, lr, 0.0, eta, mom, False)
        assert torch.allclose(p1.detach(), r1, atol=1e-6)
        assert torch.allclose(p2.detach(), r2, atol=1e-6)
    # the adapted step is small (trust ratio) where the plain one is not
    assert (r1 - w1).norm() / w1.norm() < 0.2


def test_lars_zero_weight_uses_trust_one():
    p = nn.Parameter(torch.zeros(3, 3))
    opt = LARS([p], lr=0.1, momentum=0.0, eta=0.001)
    p.grad = torch.ones(3, 3)
    opt.step()
    assert torch.allclose(p.detach(), torch.full((3, 3), -0.1))


def test_ema_update_and_buffers():
    torch.manual_seed(0)
    src = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    ema = EMA(src, momentum=0.9)
    assert all(not p.requires_grad for p in ema.parameters())
    start = {n: p.detach().clone() for n, p in ema.module.named_parameters()}
    with torch.no_grad():
        for p in src.parameters():
            p.add_(1.0)
    src.train()(torch.randn(8, 3))  # moves BN running stats
    ema.update(src)
    for n, p in ema.module.named_parameters():
        expected = 0.9 * start[n] + 0.1 * dict(src.named_parameters())[n]
        assert torch.allclose(p, expected, atol=1e-6), n
    assert torch.equal(ema.module[1].running_mean, src[1].running_mean)
    m = ema.set_momentum(0, 10, base=0.5)
    assert m == pytest.approx(0.5) and ema.momentum == pytest.approx(0.5)
    # the EMA copy sits in the owner's state_dict, stays eval, and is not trained
    owner = nn.Module()
    owner.student, owner.teacher = src, ema
    assert "teacher.module.0.weight" in owner.state_dict()
    owner.train()
    assert not ema.module.training
    decay, no_decay = split_decay_params(owner)
    assert not any(n.startswith("teacher") for n in decay + no_decay)
