"""DINO: loss against the direct formula, centre update, temperature warm-up, KoLeo, EMA."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from fmlab.pretrain import DINO, dino_loss, koleo_loss
from fmlab.pretrain.heads import DINOHead

from .conftest import TinyCNN, clustered_images, head_tail, train_losses


def dino_loop(student, teacher, center, ts, tt) -> float:
    """Mean over (teacher a, student b), a != b, of -sum_k P_t[a](k) log P_s[b](k)."""
    total, pairs = 0.0, 0
    for a, t in enumerate(teacher):
        for b, s in enumerate(student):
            if a == b:
                continue
            for row in range(t.shape[0]):
                tl = [(float(t[row, k]) - float(center[0, k])) / tt for k in range(t.shape[1])]
                sl = [float(s[row, k]) / ts for k in range(s.shape[1])]
                tz = math.log(sum(math.exp(v) for v in tl))
                sz = math.log(sum(math.exp(v) for v in sl))
                ce = -sum(math.exp(tv - tz) * (sv - sz) for tv, sv in zip(tl, sl))
                total += ce / t.shape[0]
            pairs += 1
    return total / pairs


def test_dino_loss_matches_the_formula_on_view_pairs():
    g = torch.Generator().manual_seed(0)
    student = [torch.randn(3, 6, generator=g) for _ in range(4)]  # 2 global + 2 local
    teacher = [torch.randn(3, 6, generator=g) for _ in range(2)]
    center = torch.randn(1, 6, generator=g) * 0.1
    got = dino_loss(student, teacher, center, 0.1, 0.07)
    assert float(got) == pytest.approx(dino_loop(student, teacher, center, 0.1, 0.07), rel=1e-5)


def test_center_update_is_an_ema_of_teacher_means():
    obj = DINO(TinyCNN(), out_dim=8, hidden_dim=16, bottleneck_dim=8, center_momentum=0.9)
    obj.center.fill_(1.0)
    t = [torch.randn(4, 8), torch.randn(4, 8)]
    obj.update_center(t)
    expect = 0.9 * 1.0 + 0.1 * torch.cat(t).mean(0, keepdim=True)
    assert torch.allclose(obj.center, expect, atol=1e-6)


def test_teacher_temperature_warms_up_and_teacher_is_frozen_ema():
    torch.manual_seed(0)
    obj = DINO(TinyCNN(), out_dim=8, hidden_dim=16, bottleneck_dim=8,
               warmup_teacher_temp=0.04, teacher_temp=0.07, teacher_temp_warmup_steps=10)
    assert obj.current_teacher_temp() == pytest.approx(0.04)
    obj.on_after_optimizer_step(4, 100)  # 5 steps done
    assert obj.current_teacher_temp() == pytest.approx(0.055)
    obj.on_after_optimizer_step(20, 100)
    assert obj.current_teacher_temp() == pytest.approx(0.07)
    assert all(not p.requires_grad for p in obj.teacher_encoder.parameters())
    assert all(not p.requires_grad for p in obj.teacher_head.parameters())
    with torch.no_grad():
        for p in obj.encoder.parameters():
            p.add_(1.0)
    old = [p.clone() for p in obj.teacher_encoder.parameters()]
    obj.on_after_optimizer_step(0, 100)
    m = obj.teacher_momentum
    assert m == pytest.approx(0.996)
    for o, s, t in zip(old, obj.encoder.parameters(), obj.teacher_encoder.parameters()):
        assert torch.allclose(t, m * o + (1 - m) * s, atol=1e-6)
    obj.on_after_optimizer_step(100, 100)
    assert obj.teacher_momentum == pytest.approx(1.0)


def test_koleo_matches_nearest_neighbour_formula():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(6, 4, generator=g)
    z = x / x.norm(dim=1, keepdim=True)
    expect = 0.0
    for i in range(6):
        expect += -math.log(min(float((z[i] - z[j]).norm()) for j in range(6) if j != i) + 1e-8)
    assert float(koleo_loss(x)) == pytest.approx(expect / 6, rel=1e-5)


def test_head_last_layer_is_weight_normalised():
    head = DINOHead(8, out_dim=5, hidden_dim=16, bottleneck_dim=4)
    assert not head.last_layer.g.requires_grad
    x = torch.randn(3, 8)
    out = head(x)
    # rows of the last layer are unit vectors, the bottleneck is unit-norm: |logit| <= 1
    assert out.shape == (3, 5) and float(out.detach().abs().max()) <= 1.0 + 1e-5


def test_head_batchnorm_spreads_nearly_identical_inputs():
    """use_bn normalises each hidden unit over the batch: inputs that differ by 1e-3 (a random
    ResNet's features are that alike) give spread-out outputs with BN and one output without."""
    torch.manual_seed(0)
    x = torch.randn(1, 8) + 1e-3 * torch.randn(32, 8)
    plain = DINOHead(8, out_dim=16, hidden_dim=32, bottleneck_dim=8)
    torch.manual_seed(0)
    bn = DINOHead(8, out_dim=16, hidden_dim=32, bottleneck_dim=8, use_bn=True)
    kinds = [type(m) for m in bn.mlp]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.GELU, nn.Linear, nn.BatchNorm1d, nn.GELU,
                     nn.Linear]
    assert not any(isinstance(m, nn.BatchNorm1d) for m in plain.mlp)

    def spread(head: DINOHead) -> float:  # mean per-logit std over the batch
        return float(head(x).detach().std(0).mean())

    assert spread(plain) < 1e-3
    assert spread(bn) > 100 * spread(plain)


def test_dino_with_bn_head_copies_running_stats_to_the_teacher():
    torch.manual_seed(0)
    obj = DINO(_Pixels(), out_dim=16, hidden_dim=16, bottleneck_dim=8, use_bn=True)
    obj({"global_views": [torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8)]})
    obj.on_after_optimizer_step(0, 10)
    s_bn = [m for m in obj.head.mlp if isinstance(m, nn.BatchNorm1d)]
    t_bn = [m for m in obj.teacher_head.mlp if isinstance(m, nn.BatchNorm1d)]
    assert len(s_bn) == len(t_bn) == 2
    assert float(s_bn[0].running_var.sub(1).abs().max()) > 0  # the student's stats moved ...
    for s, t in zip(s_bn, t_bn):  # ... and the teacher holds them
        assert torch.equal(s.running_mean, t.running_mean)
        assert torch.equal(s.running_var, t.running_var)


class _Pixels(nn.Module):
    """A patch-linear encoder whose outputs vary with the input, so the teacher is informative."""

    def __init__(self) -> None:
        super().__init__()
        self.feature_dim = 32
        self.conv = nn.Conv2d(3, 32, 4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).mean((2, 3))


def test_dino_loss_falls_with_multicrop_and_koleo_is_logged():
    images, _ = clustered_images(64, 4)
    torch.manual_seed(0)
    obj = DINO(_Pixels(), out_dim=256, hidden_dim=64, bottleneck_dim=32, koleo_weight=0.01,
               freeze_last_layer_steps=2)
    tf = DINO.default_transform(16, n_local=2)

    def batch(step: int) -> dict:
        return tf({"images": images}, torch.Generator().manual_seed(step))

    b = batch(0)
    assert [v.shape[-1] for v in b["global_views"] + b["local_views"]] == [16, 16, 8, 8]
    _, logs = obj(b)
    assert {"dino", "koleo", "teacher_temp", "loss"} <= set(logs)
    last_layer = obj.head.last_layer.v.clone()
    losses = train_losses(obj, batch, steps=40)
    first, last = head_tail(losses)
    assert last < first - 0.3
    assert not torch.equal(obj.head.last_layer.v, last_layer)


def test_last_layer_is_frozen_for_the_first_steps():
    torch.manual_seed(0)
    obj = DINO(_Pixels(), out_dim=16, hidden_dim=16, bottleneck_dim=8, freeze_last_layer_steps=1)
    views = {"global_views": [torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8)]}
    opt = torch.optim.SGD([p for p in obj.parameters() if p.requires_grad], lr=0.1)
    snapshot = {n: p.clone() for n, p in obj.named_parameters() if p.requires_grad}
    for step in range(2):
        loss, _ = obj(views)
        opt.zero_grad()
        loss.backward()
        obj.on_before_optimizer_step(step, 10)
        opt.step()
        if step == 0:
            assert torch.equal(obj.head.last_layer.v, snapshot["head.last_layer.v"])
            assert not torch.equal(obj.head.mlp[0].weight, snapshot["head.mlp.0.weight"])
    assert not torch.equal(obj.head.last_layer.v, snapshot["head.last_layer.v"])
