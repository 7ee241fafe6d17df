"""Losses against direct formulas and open_clip's ClipLoss / SigLipLoss."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from fmlab.multimodal.losses import (
    clip_loss,
    multi_positive_loss,
    multi_positive_targets,
    siglip_loss,
)


def _feats(n=6, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g) * 3, torch.randn(n, d, generator=g) * 3


def _clip_by_loops(a, b, s):
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    n = a.shape[0]
    total = 0.0
    for i in range(n):
        li = [s * float(a[i] @ b[j]) for j in range(n)]
        lt = [s * float(b[i] @ a[j]) for j in range(n)]
        total += -li[i] + math.log(sum(math.exp(v) for v in li))
        total += -lt[i] + math.log(sum(math.exp(v) for v in lt))
    return total / (2 * n)


def _siglip_by_loops(a, b, s, bias):
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    n = a.shape[0]
    total = 0.0
    for i in range(n):
        for j in range(n):
            z = 1.0 if i == j else -1.0
            total += math.log1p(math.exp(-z * (s * float(a[i] @ b[j]) + bias)))
    return total / n


@pytest.mark.parametrize("scale", [1.0, 14.2857, 100.0])
def test_clip_loss_matches_formula_and_open_clip(scale):
    from open_clip.loss import ClipLoss

    a, b = _feats()
    ours = clip_loss(a, b, scale)
    assert ours.item() == pytest.approx(_clip_by_loops(a, b, scale), rel=1e-5)
    theirs = ClipLoss()(F.normalize(a, dim=-1), F.normalize(b, dim=-1), torch.tensor(scale))
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-6)


@pytest.mark.parametrize("scale,bias", [(10.0, -10.0), (3.0, 0.5)])
def test_siglip_loss_matches_formula_and_open_clip(scale, bias):
    from open_clip.loss import SigLipLoss

    a, b = _feats(seed=1)
    ours = siglip_loss(a, b, scale, bias)
    assert ours.item() == pytest.approx(_siglip_by_loops(a, b, scale, bias), rel=1e-5)
    theirs = SigLipLoss()(F.normalize(a, dim=-1), F.normalize(b, dim=-1), torch.tensor(scale),
                          torch.tensor(bias))
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-6)


def test_gradients_match_open_clip():
    from open_clip.loss import ClipLoss

    a, b = _feats(seed=2)
    a1, b1 = a.clone().requires_grad_(), b.clone().requires_grad_()
    a2, b2 = a.clone().requires_grad_(), b.clone().requires_grad_()
    clip_loss(a1, b1, 7.0).backward()
    ClipLoss()(F.normalize(a2, dim=-1), F.normalize(b2, dim=-1), 7.0).backward()
    torch.testing.assert_close(a1.grad, a2.grad)
    torch.testing.assert_close(b1.grad, b2.grad)


def test_multi_positive_targets_mark_same_ids():
    ids = torch.tensor([0, 1, 0, 2, 0])
    t = multi_positive_targets(ids, ids)
    for i in range(5):
        for j in range(5):
            expected = (1.0 / int((ids == ids[i]).sum())) if ids[i] == ids[j] else 0.0
            assert t[i, j].item() == pytest.approx(expected)
    torch.testing.assert_close(t.sum(1), torch.ones(5))


def test_multi_positive_reduces_to_clip_for_distinct_ids_and_formula_otherwise():
    a, b = _feats(seed=3)
    s = 5.0
    assert multi_positive_loss(a, b, s, torch.arange(6)).item() == pytest.approx(
        clip_loss(a, b, s).item(), rel=1e-6)
    ids = torch.tensor([0, 0, 1, 1, 1, 2])
    an, bn = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    total = 0.0
    for x, y in ((an, bn), (bn, an)):
        logits = s * x @ y.T
        for i in range(6):
            pos = [j for j in range(6) if ids[j] == ids[i]]
            lse = torch.logsumexp(logits[i], 0).item()
            total += sum(lse - logits[i, j].item() for j in pos) / len(pos)
    assert multi_positive_loss(a, b, s, ids).item() == pytest.approx(total / 12, rel=1e-5)


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="same shape"):
        clip_loss(torch.randn(3, 4), torch.randn(2, 4), 1.0)
