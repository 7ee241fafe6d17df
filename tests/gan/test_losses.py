"""Adversarial losses and D regularisers against their formulas, written out independently."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from fmlab.errors import FmlabError
from fmlab.gan import GAN_LOSSES, get_loss
from fmlab.gan.nets.base import Discriminator
from fmlab.gan.regularizers import (
    LeCamEMA,
    consistency_loss,
    cr_augment,
    gradient_penalty,
    lecam_loss,
    r1_penalty,
)


def _logits(seed: int, n: int = 7) -> torch.Tensor:
    return torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 2


def _mean(f, xs) -> float:
    return sum(f(float(v)) for v in xs) / len(xs)


def _log_sigmoid(v: float) -> float:
    return -math.log1p(math.exp(-v)) if v > 0 else v - math.log1p(math.exp(v))


# expected values computed element by element in plain Python
FORMULAS = {
    "vanilla": (lambda r, f: -_mean(_log_sigmoid, r) - _mean(lambda v: _log_sigmoid(-v), f),
                lambda f: -_mean(_log_sigmoid, f)),
    "hinge": (lambda r, f: _mean(lambda v: max(0.0, 1 - v), r) + _mean(lambda v: max(0.0, 1 + v), f),
              lambda f: -_mean(lambda v: v, f)),
    "ls": (lambda r, f: 0.5 * _mean(lambda v: (v - 1) ** 2, r) + 0.5 * _mean(lambda v: v * v, f),
           lambda f: 0.5 * _mean(lambda v: (v - 1) ** 2, f)),
    "wgan": (lambda r, f: _mean(lambda v: v, f) - _mean(lambda v: v, r),
             lambda f: -_mean(lambda v: v, f)),
}
FORMULAS["wgan_gp"] = FORMULAS["wgan"]


@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_losses_match_formulas(name):
    real, fake = _logits(0), _logits(1)
    d_ref, g_ref = FORMULAS[name]
    loss = get_loss(name)
    assert float(loss.d_loss(real, fake)) == pytest.approx(d_ref(real, fake), rel=1e-9, abs=1e-12)
    assert float(loss.g_loss(fake)) == pytest.approx(g_ref(fake), rel=1e-9, abs=1e-12)


def test_loss_registry_lists_names_on_error():
    assert set(GAN_LOSSES.names()) == {"vanilla", "hinge", "ls", "wgan", "wgan_gp"}
    with pytest.raises(FmlabError, match="unknown GAN loss 'relativistic'.*hinge"):
        get_loss("relativistic")


class _Linear(Discriminator):
    """D(x) = <w, x> + b on flattened images; no own ψ (logit is the linear map)."""

    def __init__(self, w: torch.Tensor, b: float = 0.3) -> None:
        super().__init__(1, own_psi=False, sn=False)
        self.w = nn.Parameter(w.clone())
        self.b = b

    def embed(self, x):
        return (x.flatten(1) * self.w.flatten()).sum(1, keepdim=True) + self.b

    def adv_logit(self, phi):
        return phi.squeeze(1)


def test_gradient_penalty_zero_for_unit_norm_linear_critic():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(3, 4, 4, generator=g)
    real, fake = torch.randn(5, 3, 4, 4, generator=g), torch.randn(5, 3, 4, 4, generator=g)
    D = _Linear(w / w.norm())
    assert float(gradient_penalty(D, real, fake, generator=g).detach()) == pytest.approx(0.0, abs=1e-10)
    # ‖∇‖ = 3 everywhere → (3 − 1)² = 4, whatever the interpolation
    D3 = _Linear(3 * w / w.norm())
    assert float(gradient_penalty(D3, real, fake, generator=g).detach()) == pytest.approx(4.0, rel=1e-5)


def test_gradient_penalty_against_hand_interpolation():
    """A quadratic critic D(x) = Σx²: ∇ = 2x̂, with x̂ = αx + (1−α)y and α from the same seed."""

    class Quad(_Linear):
        def embed(self, x):
            return (x.flatten(1) ** 2).sum(1, keepdim=True) + 0 * self.w.sum()

    real, fake = torch.randn(4, 1, 3, 3), torch.randn(4, 1, 3, 3)
    D = Quad(torch.ones(1))
    got = gradient_penalty(D, real, fake, generator=torch.Generator().manual_seed(5))
    alpha = torch.rand(4, 1, 1, 1, generator=torch.Generator().manual_seed(5))
    x_hat = alpha * real + (1 - alpha) * fake
    norms = [float((2 * x_hat[i]).pow(2).sum().sqrt()) for i in range(4)]
    assert float(got.detach()) == pytest.approx(sum((n - 1) ** 2 for n in norms) / 4, rel=1e-5)


def test_r1_against_hand_gradient_and_is_differentiable():
    """D(x) = Σ a·x³ → ∇ = 3a·x², so R1 = ½ mean_b Σ (3a x²)²."""
    a = torch.tensor(0.7, requires_grad=True)
    x = torch.randn(6, 2, 3, 3, requires_grad=True)
    logits = (a * x.pow(3)).flatten(1).sum(1)
    got = r1_penalty(logits, x)
    ref = 0.5 * sum(float((3 * 0.7 * x[i].detach() ** 2).pow(2).sum()) for i in range(6)) / 6
    assert float(got.detach()) == pytest.approx(ref, rel=1e-5)
    got.backward()  # graph kept: d/da of ½ mean Σ 9a²x⁴ = mean Σ 9a x⁴
    assert float(a.grad) == pytest.approx(9 * 0.7 * float(x.detach().pow(4).sum()) / 6, rel=1e-4)


def test_lecam_formula_and_ema_schedule():
    ema = LeCamEMA(decay=0.99, start_iter=2)
    r1, f1 = torch.tensor([1.0, 3.0]), torch.tensor([-1.0, -2.0])
    ema.update(r1, f1, step=0)  # before start: decay 0, anchors = batch means
    assert (ema.real, ema.fake) == (2.0, -1.5)
    r2, f2 = torch.tensor([4.0]), torch.tensor([0.0])
    ema.update(r2, f2, step=2)
    assert ema.real == pytest.approx(0.99 * 2.0 + 0.01 * 4.0)
    assert ema.fake == pytest.approx(0.99 * -1.5 + 0.01 * 0.0)
    real, fake = torch.tensor([-3.0, 0.5, 2.0]), torch.tensor([1.0, 3.0, -4.0])
    ref = (sum(max(0.0, v - ema.fake) ** 2 for v in real.tolist()) / 3
           + sum(max(0.0, ema.real - v) ** 2 for v in fake.tolist()) / 3)
    assert float(lecam_loss(real, fake, ema)) == pytest.approx(ref, rel=1e-6)


def test_cr_augment_is_flip_plus_reflect_translation():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 2, 8, 8)
    y = cr_augment(x, g)
    assert y.shape == x.shape
    # every output is some flip+shift of its input: check by brute force over the 2·3·3 options
    for i in range(16):
        options = []
        for flip in (False, True):
            xi = x[i].flip(2) if flip else x[i]
            p = torch.nn.functional.pad(xi[None], [1, 1, 1, 1], mode="reflect")[0]
            options += [p[:, 1 + dy:9 + dy, 1 + dx:9 + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
        assert any(torch.equal(y[i], o) for o in options)
    assert not torch.equal(y, x)
    torch.testing.assert_close(cr_augment(x, torch.Generator().manual_seed(0)), y)


def test_consistency_loss_terms():
    from fmlab.gan.nets.base import DOutput

    a = DOutput(torch.tensor([1.0, 2.0]), torch.zeros(2, 3), torch.tensor([[1.0, 0.0], [0, 1]]))
    b = DOutput(torch.tensor([0.0, 2.0]), torch.ones(2, 3), torch.tensor([[1.0, 2.0], [0, 1]]))
    # MSE(logits) = 1/2, MSE(cls) = 4/4
    assert float(consistency_loss(a, b)) == pytest.approx(0.5 + 1.0)
    a.cls_logits = b.cls_logits = None
    assert float(consistency_loss(a, b)) == pytest.approx(0.5)
