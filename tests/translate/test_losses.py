"""Properties of the translator's losses, edge extractors and nets (no data needed)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fmlab.translate import (EDGES, CycleLoss, EdgeConsistencyLoss, IdentityLoss, PatchDiscriminator,
                             ResnetGenerator, SobelEdges, create_edges)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_cycle_loss_is_zero_for_identity_generators():
    a, b = torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16)
    assert float(CycleLoss()(a, b, nn.Identity(), nn.Identity())) == 0.0


def test_cycle_loss_is_zero_for_inverse_pair_and_positive_otherwise():
    a, b = torch.randn(4, 1, 8, 8), torch.randn(4, 1, 8, 8)
    g, f = (lambda x: 2 * x + 1), (lambda x: (x - 1) / 2)
    assert float(CycleLoss()(a, b, g, f)) == pytest.approx(0.0, abs=1e-6)
    # G(x) = x + 1 with F = identity: each direction is off by exactly 1 everywhere
    assert float(CycleLoss()(a, b, lambda x: x + 1, nn.Identity())) == pytest.approx(2.0)


def test_identity_loss_formula():
    a, b = torch.randn(2, 1, 8, 8), torch.randn(2, 1, 8, 8)
    assert float(IdentityLoss()(a, b, nn.Identity(), nn.Identity())) == 0.0
    assert float(IdentityLoss()(a, b, lambda x: x + 0.5, lambda x: x - 0.25)) == pytest.approx(0.75)


def test_sobel_edges_flat_is_zero_ramp_is_constant_and_shift_invariant():
    e = SobelEdges()
    ramp = torch.arange(8.0).view(1, 1, 1, 8).expand(2, 1, 8, 8) * 0.1
    inner = e(ramp)[..., 1:-1, 1:-1]  # unit-slope kernel: the gradient magnitude is the slope
    assert torch.allclose(inner, torch.full_like(inner, 0.1), atol=1e-3)
    x = torch.rand(2, 3, 8, 8)
    assert torch.allclose(e(x), e(x + 0.7), atol=1e-5)     # edges ignore a brightness shift
    assert float(e(torch.ones(1, 1, 8, 8)).max()) < 1e-2


def test_edge_consistency_zero_for_same_edges_positive_for_different():
    loss = EdgeConsistencyLoss(SobelEdges())
    a, b = torch.rand(2, 1, 12, 12), torch.rand(2, 1, 12, 12)
    assert float(loss(a, a + 0.3, b, b - 0.2)) == pytest.approx(0.0, abs=1e-5)
    assert float(loss(a, torch.zeros_like(a), b, b)) > 0.01


def test_edges_registry_names():
    assert {"sobel", "none"} <= set(EDGES)
    assert create_edges("none") is None


@pytest.mark.parametrize("channels,size", [(1, 28), (3, 32), (1, 30), (3, 64)])
def test_generator_keeps_shape_and_range(channels, size):
    g = ResnetGenerator(channels, ngf=4, n_blocks=1)
    with torch.no_grad():
        y = g(torch.rand(2, channels, size, size) * 2 - 1)
    assert y.shape == (2, channels, size, size)
    assert float(y.abs().max()) <= 1.0
    d = PatchDiscriminator(channels, ndf=4)
    assert d(y).shape[:2] == (2, 1)
