"""The DDPM schedule against its closed forms, and q(x_t | x_0) moments on a big batch."""

from __future__ import annotations

import math

import pytest
import torch

from fmlab.diffusion.schedule import NoiseSchedule, make_betas

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("name, T", [("linear", 50), ("cosine", 50), ("linear", 10)])
def test_abar_is_the_product_of_one_minus_beta(name, T):
    sch = NoiseSchedule(name, T)
    prod, want = 1.0, []
    for b in sch.betas.tolist():
        prod *= 1.0 - b
        want.append(prod)
    assert torch.allclose(sch.abar, torch.tensor(want, dtype=torch.float64), rtol=1e-12)
    assert bool((sch.betas > 0).all()) and bool((sch.betas < 1).all())


def test_cosine_abar_follows_f_of_t():
    T, s = 100, 0.008
    sch = NoiseSchedule("cosine", T)
    f = [math.cos(((t / T) + s) / (1 + s) * math.pi / 2) ** 2 for t in range(T + 1)]
    want = torch.tensor([f[t + 1] / f[0] for t in range(T)], dtype=torch.float64)
    ok = sch.betas < 0.999                         # the clip only touches the last steps
    assert torch.allclose(sch.abar[: int(ok.sum()) - 1], want[: int(ok.sum()) - 1], rtol=1e-9)


def test_linear_endpoints_scale_with_T():
    b = make_betas("linear", 200)
    assert float(b[0]) == pytest.approx(5e-4) and float(b[-1]) == pytest.approx(0.1)


def test_q_sample_moments_on_a_big_batch():
    torch.manual_seed(0)
    sch = NoiseSchedule("linear", 100)
    n = 200_000
    x0 = torch.full((n, 1), 0.7)
    for t in (0, 30, 99):
        tt = torch.full((n,), t)
        xt = sch.q_sample(x0, tt, torch.randn_like(x0))
        mean, var = float(xt.mean()), float(xt.var())
        assert mean == pytest.approx(0.7 * float(sch.abar[t]) ** 0.5, abs=4e-3)
        assert var == pytest.approx(1 - float(sch.abar[t]), abs=4e-3 + 0.01 * (1 - float(sch.abar[t])))


def test_posterior_is_gaussian_conditioning_of_the_forward_process():
    sch = NoiseSchedule("cosine", 40)
    x0, xt = torch.tensor([[0.3]]), torch.tensor([[-0.4]])
    for t in (1, 10, 39):
        a, ab, ab_prev = (float(sch.alphas[t]), float(sch.abar[t]), float(sch.abar[t - 1]))
        # x_{t-1} ~ N(√ᾱ_{t-1} x0, 1-ᾱ_{t-1}); x_t = √α_t x_{t-1} + √β_t ε
        cov = a ** 0.5 * (1 - ab_prev)
        want_mean = ab_prev ** 0.5 * 0.3 + cov / (1 - ab) * (-0.4 - ab ** 0.5 * 0.3)
        want_var = (1 - ab_prev) - cov ** 2 / (1 - ab)
        mean, var = sch.posterior(x0, xt, torch.tensor([t]))
        assert float(mean) == pytest.approx(want_mean, rel=1e-5)
        assert float(var) == pytest.approx(want_var, rel=1e-5)
    _, var0 = sch.posterior(x0, xt, torch.tensor([0]))
    assert float(var0) == 0.0
