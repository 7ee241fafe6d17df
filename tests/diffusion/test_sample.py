"""Samplers: with the oracle ε of a one-image data set, DDIM and DDPM both end exactly on that image."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fmlab.diffusion.sample import sample
from fmlab.diffusion.schedule import NoiseSchedule

pytestmark = pytest.mark.usefixtures("one_thread")


class Oracle(nn.Module):
    """ε*(x_t, t) = (x_t − √ᾱ_t x*) / √(1 − ᾱ_t): the exact noise when every x_0 is x*."""

    num_classes = 2

    def __init__(self, target: torch.Tensor, sch: NoiseSchedule) -> None:
        super().__init__()
        self.target, self.sch = target, sch
        self.calls: list[torch.Tensor] = []

    def forward(self, x, t, y):
        self.calls.append(y.clone())
        a = self.sch.sqrt_abar[t].float().view(-1, 1, 1, 1)
        s = self.sch.sqrt_1m_abar[t].float().view(-1, 1, 1, 1)
        return (x - a * self.target) / s


@pytest.mark.parametrize("sampler, steps", [("ddim", 5), ("ddim", 50), ("ddpm", 0)])
def test_oracle_eps_recovers_the_data_point(sampler, steps):
    sch = NoiseSchedule("cosine", 50)
    target = torch.rand(1, 1, 28, 28) * 1.6 - 0.8
    out = sample(Oracle(target, sch), sch, torch.tensor([0, 1, 1]), sampler=sampler,
                 steps=max(steps, 1), seed=3)
    assert torch.allclose(out, target.expand(3, -1, -1, -1), atol=1e-4)


def test_seeded_and_guidance_queries_the_null_class():
    sch = NoiseSchedule("linear", 20)
    target = torch.zeros(1, 1, 28, 28)
    net = Oracle(target, sch)
    a = sample(net, sch, torch.tensor([0, 1]), steps=3, seed=7, guidance=2.0)
    assert {int(v) for c in net.calls for v in c} == {0, 1, 2}   # 2 = K, the null class
    b = sample(Oracle(target, sch), sch, torch.tensor([0, 1]), steps=3, seed=7, guidance=2.0)
    assert torch.equal(a, b)
