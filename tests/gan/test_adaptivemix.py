"""AdaptiveMix: seeded λ ~ Beta(1,1), the mixed-embedding target, the cosine term, the logits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from fmlab.gan import adaptive_mix, create_discriminator
from fmlab.gan.adaptivemix import sample_mix, shrinkage_loss


def test_lambda_is_seeded_and_uniform_for_alpha_one():
    lam1, perm1 = sample_mix(8, torch.Generator().manual_seed(3))
    lam2, perm2 = sample_mix(8, torch.Generator().manual_seed(3))
    assert lam1 == lam2 and torch.equal(perm1, perm2)
    assert sorted(perm1.tolist()) == list(range(8))
    g = torch.Generator().manual_seed(0)
    lams = np.array([sample_mix(2, g)[0] for _ in range(400)])
    assert ((lams > 0) & (lams < 1)).all()
    assert stats.kstest(lams, "uniform").pvalue > 1e-3  # Beta(1, 1) is U(0, 1)
    # α = 0.2 piles mass near 0 and 1 (Beta(.2,.2) is U-shaped)
    g = torch.Generator().manual_seed(0)
    lams_u = np.array([sample_mix(2, g, alpha=0.2)[0] for _ in range(400)])
    assert stats.kstest(lams_u, stats.beta(0.2, 0.2).cdf).pvalue > 1e-3
    assert np.mean((lams_u < 0.1) | (lams_u > 0.9)) > 0.4


def test_shrinkage_loss_is_negative_mean_cosine_and_target_is_fixed():
    a = torch.tensor([[1.0, 0.0], [1.0, 1.0]], requires_grad=True)
    t = torch.tensor([[0.0, 2.0], [2.0, 2.0]], requires_grad=True)
    loss = shrinkage_loss(a, t)
    assert float(loss.detach()) == pytest.approx(-(0.0 + 1.0) / 2)
    loss.backward()
    assert t.grad is None and a.grad is not None


def test_adaptive_mix_against_direct_computation():
    D = create_discriminator("dcgan", ch=4, channels=1).eval()
    x = torch.rand(6, 1, 32, 32) * 2 - 1
    out = adaptive_mix(D, x, generator=torch.Generator().manual_seed(11), noise_std=0.05)

    # redo every step by hand with the same draws
    g = torch.Generator().manual_seed(11)
    lam, perm = sample_mix(6, g)
    noise = torch.randn(6, D.feature_dim, generator=g)
    assert out.lam == lam and torch.equal(out.perm, perm)
    with torch.no_grad():
        f_a, f_b = D.embed(x), D.embed(x[perm])  # f(x_b) computed separately here
        f_m = D.embed(lam * x + (1 - lam) * x[perm])
        target = lam * f_a + (1 - lam) * f_b + 0.05 * noise
        cos = torch.nn.functional.cosine_similarity(f_m, target, dim=1)
        logits = D.adv_logit(lam * f_a + (1 - lam) * f_b) + D.adv_logit(f_m)
    torch.testing.assert_close(out.target, target, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.mixed_embedding.detach(), f_m)
    assert float(out.loss.detach()) == pytest.approx(float(-cos.mean()), rel=1e-5)
    torch.testing.assert_close(out.logits.detach(), logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.plain.logits.detach(), D(x).logits.detach())
    # the noise really is N(0, σ²) around the mixed embedding
    resid = (out.target - (lam * f_a + (1 - lam) * f_b)) / 0.05
    assert abs(float(resid.std()) - 1.0) < 0.1


def test_adaptive_mix_gradients_reach_d_but_not_through_target():
    D = create_discriminator("mlp", hidden=16, img_shape=(1, 8, 8))
    x = torch.rand(4, 1, 8, 8, requires_grad=True)
    out = adaptive_mix(D, x, generator=torch.Generator().manual_seed(0))
    assert not out.target.requires_grad
    out.loss.backward()
    assert D._modules["0"].weight.grad is not None and x.grad is not None
