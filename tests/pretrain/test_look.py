"""LOOK: leave-one-out kNN loss against the formula, bank updates, falling loss."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from fmlab.errors import DataError
from fmlab.pretrain import LOOK, look_loss

from .conftest import TinyCNN, head_tail, train_losses


def look_loop(z, labels, index, bank, bank_labels, k, tau) -> float:
    """p_i = sum_{j in N_k(i), y_j = y_i} e^{z_i.z_j/tau} / sum_{j in N_k(i)} e^{z_i.z_j/tau}."""
    losses = []
    for i in range(z.shape[0]):
        cands = [j for j in range(bank.shape[0]) if j != int(index[i]) and bank_labels[j] >= 0]
        sims = {j: float(z[i] @ bank[j]) for j in cands}
        nbrs = sorted(cands, key=lambda j: -sims[j])[:k]
        num = sum(math.exp(sims[j] / tau) for j in nbrs if bank_labels[j] == labels[i])
        den = sum(math.exp(sims[j] / tau) for j in nbrs)
        if num > 0:
            losses.append(-math.log(num / den))
    return sum(losses) / len(losses)


def test_look_matches_the_formula_and_leaves_self_out():
    g = torch.Generator().manual_seed(0)
    bank = F.normalize(torch.randn(12, 4, generator=g), dim=1)
    bank_labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, -1, 0, 1])  # slot 9 empty
    index = torch.tensor([0, 4, 7])
    labels = bank_labels[index]
    z = bank[index] + 0.05 * torch.randn(3, 4, generator=g)
    z = F.normalize(z, dim=1)
    loss, logs = look_loss(z, labels, index, bank, bank_labels, k=4, temperature=0.1)
    assert float(loss) == pytest.approx(
        look_loop(z, labels, index, bank, bank_labels, 4, 0.1), rel=1e-5)
    # leave-one-out: the anchor's own slot is its most similar entry but never a neighbour,
    # so putting an exact copy of the anchor elsewhere in the bank changes the loss
    bank2 = bank.clone()
    bank2[9] = z[0]
    bank_labels2 = bank_labels.clone()
    bank_labels2[9] = int(labels[0])
    loss2, _ = look_loss(z, labels, index, bank2, bank_labels2, k=4, temperature=0.1)
    assert float(loss2) < float(loss)
    assert 0.0 <= float(logs["no_pos_frac"]) <= 1.0
    # whatever sits in the anchor's own slot is ignored
    one = index[:1]
    base, _ = look_loss(z[:1], labels[:1], one, bank, bank_labels, 4, 0.1)
    bank3, labels3 = bank.clone(), bank_labels.clone()
    bank3[0], labels3[0] = z[0], 2
    again, _ = look_loss(z[:1], labels[:1], one, bank3, labels3, 4, 0.1)
    assert float(again) == pytest.approx(float(base), rel=1e-6)


def test_gradient_flows_to_the_anchor_only():
    g = torch.Generator().manual_seed(1)
    bank = F.normalize(torch.randn(8, 3, generator=g), dim=1)
    bank_labels = torch.tensor([0, 1] * 4)
    z = F.normalize(torch.randn(2, 3, generator=g), dim=1).requires_grad_(True)
    loss, _ = look_loss(z, torch.tensor([0, 1]), torch.tensor([0, 1]), bank, bank_labels, 3, 0.1)
    loss.backward()
    assert z.grad is not None and float(z.grad.abs().sum()) > 0


def test_bank_is_momentum_updated_and_normalised():
    torch.manual_seed(0)
    obj = LOOK(TinyCNN(), num_samples=6, k=2, proj_dim=None, bank_momentum=0.5)
    z1 = F.normalize(torch.randn(2, 32), dim=1)
    obj.update_bank(z1, torch.tensor([1, 2]), torch.tensor([3, 5]))
    assert torch.allclose(obj.bank[3], z1[0]) and obj.bank_labels.tolist() == [-1, -1, -1, 1,
                                                                                  -1, 2]
    z2 = F.normalize(torch.randn(1, 32), dim=1)
    obj.update_bank(z2, torch.tensor([1]), torch.tensor([3]))
    assert torch.allclose(obj.bank[3], F.normalize(0.5 * z1[0] + 0.5 * z2[0], dim=0), atol=1e-6)
    with pytest.raises(DataError, match="index"):
        obj({"images": torch.rand(2, 3, 8, 8), "labels": torch.tensor([0, 1]),
             "index": torch.tensor([0, 6])})


def test_look_loss_falls():
    g = torch.Generator().manual_seed(0)
    n = 64
    labels = torch.arange(n) % 4
    colours = torch.rand(4, 3, generator=g) * 40  # weak class signal under strong noise
    images = (colours[labels].view(n, 1, 1, 3) + torch.rand(n, 16, 16, 3, generator=g) * 215)
    images = images.clamp(0, 255).to(torch.uint8)
    torch.manual_seed(0)
    obj = LOOK(TinyCNN(), num_samples=n, k=10, proj_dim=32, proj_hidden_dim=64)
    tf = LOOK.default_transform(16)

    def batch(step: int) -> dict:
        return tf({"images": images, "labels": labels, "index": torch.arange(n)},
                  torch.Generator().manual_seed(step))

    with torch.no_grad():  # first pass fills the bank (an empty bank has no neighbours)
        obj.train()
        first_loss, _ = obj(batch(999))
    assert float(first_loss) == 0.0 and bool((obj.bank_labels >= 0).all())
    first, last = head_tail(train_losses(obj, batch, steps=40))
    assert last < 0.5 * first
