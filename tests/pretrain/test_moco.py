"""MoCo v2: logits/labels, queue ring buffer, momentum update, frozen key encoder, falling loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fmlab.errors import ConfigError
from fmlab.pretrain import MoCo, moco_logits

from .conftest import TinyCNN, clustered_images, head_tail, train_losses


def test_moco_logits_and_labels_match_direct_formula():
    g = torch.Generator().manual_seed(0)
    q = F.normalize(torch.randn(4, 8, generator=g), dim=1)
    k = F.normalize(torch.randn(4, 8, generator=g), dim=1)
    queue = F.normalize(torch.randn(10, 8, generator=g), dim=1)
    logits, labels = moco_logits(q, k, queue, 0.2)
    assert logits.shape == (4, 11) and torch.equal(labels, torch.zeros(4, dtype=torch.long))
    for i in range(4):
        assert float(logits[i, 0]) == pytest.approx(float(q[i] @ k[i]) / 0.2, rel=1e-5)
        for j in range(10):
            assert float(logits[i, 1 + j]) == pytest.approx(float(q[i] @ queue[j]) / 0.2,
                                                            rel=1e-5, abs=1e-6)


def test_queue_overwrites_oldest_and_wraps():
    obj = MoCo(TinyCNN(), queue_size=5, proj_dim=4)
    keys1 = torch.arange(12.0).view(3, 4)
    obj.enqueue(keys1)
    assert torch.equal(obj.queue[:3], keys1) and int(obj.queue_ptr) == 3
    old = obj.queue[3:].clone()
    keys2 = -torch.arange(12.0).view(3, 4) - 1
    obj.enqueue(keys2)  # slots 3, 4, then wraps to 0
    assert torch.equal(obj.queue[3:], keys2[:2]) and torch.equal(obj.queue[0], keys2[2])
    assert torch.equal(obj.queue[1:3], keys1[1:]) and int(obj.queue_ptr) == 1
    assert not torch.equal(obj.queue[3:], old)


def test_forward_enqueues_the_keys_in_training_only():
    torch.manual_seed(0)
    obj = MoCo(TinyCNN(), queue_size=16, proj_dim=8)
    views = [torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8)]
    obj.eval()
    before = obj.queue.clone()
    obj({"views": views})
    assert torch.equal(obj.queue, before)
    obj.train()
    obj.key_encoder.train()
    with torch.no_grad():
        k = F.normalize(obj.key_head(obj.key_encoder(views[1])), dim=1)
    obj({"views": views})
    assert torch.allclose(obj.queue[:4], k, atol=1e-6) and int(obj.queue_ptr) == 4


def test_momentum_update_and_frozen_key_encoder():
    torch.manual_seed(0)
    obj = MoCo(TinyCNN(), queue_size=8, momentum=0.9)
    assert all(not p.requires_grad for p in obj.key_encoder.parameters())
    assert all(not p.requires_grad for p in obj.key_head.parameters())
    with torch.no_grad():
        for p in obj.encoder.parameters():
            p.add_(1.0)
    old = [p.clone() for p in obj.key_encoder.parameters()]
    new = [p.clone() for p in obj.encoder.parameters()]
    obj.on_after_optimizer_step(0, 10)
    for o, n, k in zip(old, new, obj.key_encoder.parameters()):
        assert torch.allclose(k, 0.9 * o + 0.1 * n, atol=1e-6)
    cos = MoCo(TinyCNN(), queue_size=8, momentum=0.99, momentum_schedule="cosine")
    cos.on_after_optimizer_step(10, 10)
    assert cos.momentum == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="momentum_schedule"):
        MoCo(TinyCNN(), momentum_schedule="linear")


def test_moco_loss_falls():
    images, _ = clustered_images(64, 4)
    torch.manual_seed(0)
    obj = MoCo(TinyCNN(), queue_size=128, momentum=0.99)
    tf = MoCo.default_transform(16)

    def batch(step: int) -> dict:
        return tf({"images": images}, torch.Generator().manual_seed(step))

    with torch.no_grad():  # fill the queue with real keys first: random keys are easier
        obj.train()
        obj(batch(1000))
        obj(batch(1001))
    first, last = head_tail(train_losses(obj, batch, steps=40))
    assert last < first - 0.1
