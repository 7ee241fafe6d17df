"""NT-Xent / SupCon against direct loop implementations; SimCLR's loss falls."""

from __future__ import annotations

import math

import pytest
import torch

from fmlab.errors import DataError
from fmlab.pretrain import SimCLR, SupCon, contrastive_loss

from .conftest import TinyCNN, clustered_images, head_tail, train_losses


def _sim(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.dot(a, b) / (a.norm() * b.norm()))


def nt_xent_loop(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> float:
    """l_i = -log[exp(sim(z_i, z_j)/tau) / sum_{k != i} exp(sim(z_i, z_k)/tau)], mean over 2N."""
    z = list(z1) + list(z2)
    n = len(z1)
    total = 0.0
    for i in range(2 * n):
        j = (i + n) % (2 * n)
        den = sum(math.exp(_sim(z[i], z[k]) / tau) for k in range(2 * n) if k != i)
        total += -math.log(math.exp(_sim(z[i], z[j]) / tau) / den)
    return total / (2 * n)


def supcon_loop(views: list[torch.Tensor], labels: list[int], tau: float) -> float:
    """Khosla et al. L_out: -1/|P(i)| sum_p log(exp(s_ip/tau) / sum_{a != i} exp(s_ia/tau))."""
    z = [row for v in views for row in v]
    y = labels * len(views)
    losses = []
    for i in range(len(z)):
        den = sum(math.exp(_sim(z[i], z[a]) / tau) for a in range(len(z)) if a != i)
        pos = [p for p in range(len(z)) if p != i and y[p] == y[i]]
        if pos:
            losses.append(-sum(math.log(math.exp(_sim(z[i], z[p]) / tau) / den)
                               for p in pos) / len(pos))
    return sum(losses) / len(losses)


@pytest.mark.parametrize("tau", [0.2, 0.5])
def test_nt_xent_matches_the_loop(tau):
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    loss, acc = contrastive_loss([z1, z2], tau)
    assert float(loss) == pytest.approx(nt_xent_loop(z1, z2, tau), rel=1e-5)
    assert 0.0 <= float(acc) <= 1.0


def test_supcon_with_unique_labels_is_nt_xent():
    g = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    plain, _ = contrastive_loss([z1, z2], 0.3)
    sup, _ = contrastive_loss([z1, z2], 0.3, labels=torch.arange(5))
    assert float(sup) == pytest.approx(float(plain), rel=1e-6)


def test_supcon_with_shared_labels_matches_the_loop():
    g = torch.Generator().manual_seed(2)
    views = [torch.randn(6, 4, generator=g) for _ in range(3)]
    labels = [0, 1, 0, 2, 1, 2]
    loss, _ = contrastive_loss(views, 0.25, labels=torch.tensor(labels))
    assert float(loss) == pytest.approx(supcon_loop(views, labels, 0.25), rel=1e-5)


def test_perfect_pairs_give_full_accuracy_and_errors():
    z = torch.eye(4) * 3
    loss, acc = contrastive_loss([z, z.clone()], 0.1)
    assert float(acc) == 1.0 and float(loss) < 0.01
    with pytest.raises(DataError, match="two views"):
        contrastive_loss([z], 0.1)


def test_simclr_objective_loss_falls_and_supcon_requires_labels():
    images, labels = clustered_images(32, 4)
    torch.manual_seed(0)
    obj = SimCLR(TinyCNN(), proj_hidden_dim=64, proj_dim=32)
    tf = SimCLR.default_transform(16)

    def batch(step: int) -> dict:
        return tf({"images": images, "labels": labels}, torch.Generator().manual_seed(step))

    first, last = head_tail(train_losses(obj, batch, steps=40))
    assert last < first - 0.1
    sup = SupCon(TinyCNN(), proj_hidden_dim=64, proj_dim=32)
    with pytest.raises(DataError, match="labels"):
        sup({"views": batch(0)["views"]})
    loss, logs = sup(batch(0))
    assert loss.ndim == 0 and "pos_top1" in logs
