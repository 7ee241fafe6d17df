"""GAN-CLS matching-aware loss on hand-computed logits; mismatched captions; label flipping."""

from __future__ import annotations

import math

import pytest
import torch

from fmlab.errors import ConfigError, DataError
from fmlab.gan.losses import get_loss
from fmlab.gan.matching import MatchingAwareLoss, instance_noise, mismatched_indices


def _sp(v: float) -> float:
    return math.log1p(math.exp(v))


def test_vanilla_d_loss_on_hand_computed_logits():
    rr, rw, fr = torch.tensor([2.0, -1.0]), torch.tensor([0.5, 1.5]), torch.tensor([-3.0, 0.0])
    real = (_sp(-2.0) + _sp(1.0)) / 2           # −log σ(s) = softplus(−s)
    wrong = (_sp(0.5) + _sp(1.5)) / 2           # −log(1 − σ(s)) = softplus(s)
    fake = (_sp(-3.0) + _sp(0.0)) / 2
    got = MatchingAwareLoss("vanilla").d_loss(rr, rw, fr)
    assert float(got) == pytest.approx(real + 0.5 * (wrong + fake), rel=1e-6)
    assert float(MatchingAwareLoss("vanilla").g_loss(fr)) == pytest.approx((_sp(3.0) + _sp(0.0)) / 2)


def test_hinge_d_loss_on_hand_computed_logits():
    rr, rw, fr = torch.tensor([0.5, 2.0]), torch.tensor([-0.5, 0.25]), torch.tensor([-2.0, 1.0])
    want = (0.5 + 0.0) / 2 + 0.5 * ((0.5 + 1.25) / 2 + (0.0 + 2.0) / 2)
    assert float(MatchingAwareLoss("hinge").d_loss(rr, rw, fr)) == pytest.approx(want)
    assert float(MatchingAwareLoss("hinge").g_loss(fr)) == pytest.approx(0.5)


@pytest.mark.parametrize("base", ["vanilla", "hinge"])
def test_without_mismatch_it_is_the_plain_conditional_gan_loss(base):
    g = torch.Generator().manual_seed(0)
    rr, fr = torch.randn(16, generator=g), torch.randn(16, generator=g)
    plain = get_loss(base).d_loss(rr, fr)
    assert torch.allclose(MatchingAwareLoss(base, mismatch=False).d_loss(rr, None, fr), plain)
    with pytest.raises(DataError, match="mismatched-caption logits"):
        MatchingAwareLoss(base).d_loss(rr, None, fr)


def test_flip_p_one_swaps_every_target():
    g = torch.Generator().manual_seed(1)
    rr, rw, fr = (torch.randn(8, generator=g) for _ in range(3))
    flipped = MatchingAwareLoss("vanilla", flip_p=1.0).d_loss(rr, rw, fr)
    # swapping targets = negating the logits in the vanilla loss
    assert torch.allclose(flipped, MatchingAwareLoss("vanilla").d_loss(-rr, -rw, -fr))
    half = MatchingAwareLoss("vanilla", flip_p=0.5)
    a = half.d_loss(rr, rw, fr, generator=torch.Generator().manual_seed(3))
    b = half.d_loss(rr, rw, fr, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_mismatched_indices_pick_another_class_when_there_is_one():
    labels = torch.tensor([0, 0, 1, 2, 2, 2])
    for seed in range(5):
        j = mismatched_indices(labels, torch.Generator().manual_seed(seed))
        assert (labels[j] != labels).all()
    same = mismatched_indices(torch.tensor([4, 4, 4]), torch.Generator().manual_seed(0))
    assert (same != torch.arange(3)).all()
    with pytest.raises(DataError):
        mismatched_indices(torch.tensor([1]))


def test_bad_settings_and_instance_noise():
    with pytest.raises(ConfigError, match="'wgan'"):
        MatchingAwareLoss("wgan")
    with pytest.raises(ConfigError, match="flip_p"):
        MatchingAwareLoss(flip_p=1.5)
    x = torch.zeros(2000)
    assert instance_noise(x, 0.0) is x
    assert float(instance_noise(x, 0.5, torch.Generator().manual_seed(0)).std()) == pytest.approx(0.5, rel=0.1)
