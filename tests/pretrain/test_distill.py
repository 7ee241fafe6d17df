"""Label-free distillation: KL formula, zero when student equals teacher, frozen teacher."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from fmlab.errors import ConfigError
from fmlab.pretrain import Distill, distill_loss

from .conftest import TinyCNN, clustered_images, head_tail, train_losses


def test_distill_loss_is_t2_scaled_kl():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(4, 5, generator=g), torch.randn(4, 5, generator=g)
    temp = 2.0
    pt, ps = (t / temp).softmax(1), (s / temp).softmax(1)
    kl = (pt * (pt.log() - ps.log())).sum(1).mean() * temp ** 2
    assert float(distill_loss(s, t, temp)) == pytest.approx(float(kl), rel=1e-5)


def test_loss_is_zero_when_student_equals_teacher():
    torch.manual_seed(0)
    enc, head = TinyCNN(), nn.Linear(32, 4)
    teacher = nn.Sequential(copy.deepcopy(enc), copy.deepcopy(head))
    obj = Distill(enc, teacher, head=head).eval()
    loss, logs = obj({"images": torch.randn(6, 3, 8, 8)})
    assert float(loss.detach()) == pytest.approx(0.0, abs=1e-6) and float(logs["agreement"]) == 1.0


def test_teacher_is_frozen_and_stays_in_eval_mode():
    teacher = nn.Sequential(TinyCNN(), nn.Linear(32, 3))
    obj = Distill(TinyCNN(), teacher, num_classes=3)
    obj.train()
    assert not teacher.training and all(not p.requires_grad for p in teacher.parameters())
    assert obj.encoder.training
    with pytest.raises(ConfigError, match="num_classes"):
        Distill(TinyCNN(), nn.Sequential(TinyCNN()))


def test_distill_loss_falls_without_labels():
    images, _ = clustered_images(64, 4)
    torch.manual_seed(1)
    teacher = nn.Sequential(TinyCNN(), nn.Linear(32, 4))
    with torch.no_grad():
        teacher[1].weight.mul_(20)  # confident teacher: a target worth matching
    obj = Distill(TinyCNN(), teacher, num_classes=4)
    tf = Distill.default_transform(16)

    def batch(step: int) -> dict:
        return tf({"images": images}, torch.Generator().manual_seed(step))

    first, last = head_tail(train_losses(obj, batch, steps=40, lr=3e-3))
    assert last < 0.5 * first
