"""Controlled caption attacks: every δ lies in the ε-ball (and keeps pixels in [0, 1]) exactly,
the attacks lower their own losses, and the success metrics count what they say."""

from __future__ import annotations

import pytest
import torch

from fmlab.caption.attack import (
    AttackGenerator,
    caption_success,
    feature_attack,
    feature_loss,
    lp_norm,
    output_attack,
    project,
)
from fmlab.caption.models import CaptionDecoder, NormalisedEncoder, ImageTower
from fmlab.errors import ConfigError

pytestmark = pytest.mark.usefixtures("one_thread")


def _in_ball(delta: torch.Tensor, x: torch.Tensor, eps: float) -> bool:
    return bool(delta.abs().max() <= eps and (x + delta).min() >= 0 and (x + delta).max() <= 1)


def test_projection_is_exact_and_idempotent():
    torch.manual_seed(0)
    x = torch.rand(6, 1, 8, 8)
    x[0] = 0.0
    x[1] = 1.0
    delta = project(torch.randn(6, 1, 8, 8), x, 0.1)
    assert _in_ball(delta, x, 0.1)
    assert torch.equal(project(delta, x, 0.1), delta)
    small = 0.01 * torch.rand(6, 1, 8, 8) * (x < 0.98)  # already inside: unchanged
    assert torch.equal(project(small, x, 0.1), small)


@pytest.mark.parametrize("eps", [0.02, 0.1, 0.3])
def test_feature_attack_respects_the_ball_and_moves_features_to_the_target(eps):
    torch.manual_seed(0)
    enc = NormalisedEncoder(ImageTower(8, 4)).eval()
    x, xt = torch.rand(5, 1, 12, 12), torch.rand(5, 1, 12, 12)
    delta = feature_attack(enc, x, xt, eps, steps=15, c=0.01, p=2)
    assert _in_ball(delta, x, eps)
    with torch.no_grad():
        ht = enc(xt)
        before = feature_loss(enc(x), ht, torch.zeros_like(x), 0.0, 2)
        after = feature_loss(enc(x + delta), ht, delta, 0.0, 2)
    assert after.mean() < before.mean()


def test_output_attack_raises_the_target_caption_and_respects_the_ball():
    torch.manual_seed(0)
    enc = NormalisedEncoder(ImageTower(8, 4)).eval()
    dec = CaptionDecoder(15, 8, hidden=16, embed=8, max_len=5).eval()
    x = torch.rand(4, 1, 12, 12)
    target = torch.tensor([[5, 6, 7, 2, 0]]).repeat(4, 1)
    delta = output_attack(enc, dec, x, target, 0.2, steps=10)
    assert _in_ball(delta, x, 0.2)
    with torch.no_grad():
        lp0 = dec.token_logp(enc(x), target)[0].sum()
        lp1 = dec.token_logp(enc(x + delta), target)[0].sum()
    assert lp1 > lp0


def test_generator_perturbation_is_bounded_and_bad_bounds_are_refused():
    torch.manual_seed(0)
    g = AttackGenerator(0.15, width=4, size=10)
    with torch.no_grad():
        g.net[-1].bias.fill_(50.0)  # saturate tanh: δ = ε before the pixel clip
    x = torch.rand(3, 1, 10, 10)
    d = g(x)
    assert _in_ball(d, x, 0.15) and torch.allclose(d.max(), torch.tensor(0.15))
    for bad in (0.0, 1.5):
        with pytest.raises(ConfigError, match="eps"):
            AttackGenerator(bad)
    with pytest.raises(ConfigError, match="eps"):
        feature_attack(NormalisedEncoder(ImageTower(4, 2)), x, x, -0.1)


def test_lp_norms_match_direct_formulas():
    d = torch.tensor([[[[3.0, -4.0]]]])
    assert torch.allclose(lp_norm(d, 2), torch.tensor([5.0]))
    assert torch.allclose(lp_norm(d, 1), torch.tensor([7.0]))
    assert torch.allclose(lp_norm(d, float("inf")), torch.tensor([4.0]))


def test_caption_success_counts_digit_exact_and_injected_keywords():
    adv = ["a thin three , upright", "a thick one", "a thin seven"]
    target = ["a thin three , upright", "a thin three", "a thin seven , bright"]
    clean = ["a thick one", "a thick one", "a thick one"]
    r = caption_success(adv, target, clean, [3, 3, 7])
    assert r["digit"] == pytest.approx(2 / 3) and r["exact"] == pytest.approx(1 / 3)
    # keywords: {thin, three, ",", upright} 4/4; {thin, three} 0/2; {thin, seven, ",", bright} 2/4
    assert r["inject"] == pytest.approx((1 + 0 + 0.5) / 3)
    with pytest.raises(ConfigError):
        caption_success([], [], [], [])
