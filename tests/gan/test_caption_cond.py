"""Caption-conditioned G/D wrappers: the concatenation, the projection term, one GAN-CLS step."""

from __future__ import annotations

import pytest
import torch

from fmlab.errors import DataError
from fmlab.gan import create_discriminator, create_generator
from fmlab.gan.caption_cond import CaptionDiscriminator, CaptionGenerator
from fmlab.gan.matching import MatchingAwareLoss, mismatched_indices

SHAPE = (1, 8, 8)


def _nets(seed: int = 0) -> tuple[CaptionGenerator, CaptionDiscriminator]:
    torch.manual_seed(seed)
    G = CaptionGenerator(create_generator("mlp", z_dim=6 + 3, hidden=16, img_shape=SHAPE), 5, 3)
    D = CaptionDiscriminator(create_discriminator("mlp", hidden=16, img_shape=SHAPE), 5, 3)
    return G, D


def test_generator_is_the_base_on_z_concatenated_with_the_condition():
    G, _ = _nets()
    z, e = torch.randn(4, 6), torch.randn(4, 5)
    want = G.base(torch.cat([z, G.project(e)], 1))
    assert torch.equal(G(z, e), want)
    assert not torch.allclose(G(z, e), G(z, e + 1.0))      # the caption changes the image


def test_discriminator_adds_the_projection_inner_product():
    _, D = _nets()
    x, e = torch.randn(4, *SHAPE), torch.randn(4, 5)
    phi = D.base.embed(x)
    c = torch.nn.functional.leaky_relu(D.project.fc(e), 0.2)
    want = D.base.adv_logit(phi) + (c * (phi @ D.V.weight.T)).sum(1)
    assert torch.allclose(D(x, e), want, atol=1e-6)


def test_one_matching_aware_step_reaches_both_projections():
    G, D = _nets()
    x, e, y = torch.randn(6, *SHAPE), torch.randn(6, 5), torch.tensor([0, 0, 1, 1, 2, 2])
    wrong = e[mismatched_indices(y, torch.Generator().manual_seed(0))]
    fake = G(G.sample_z(6, torch.Generator().manual_seed(1)), e)
    loss = MatchingAwareLoss("hinge").d_loss(D(x, e), D(x, wrong), D(fake.detach(), e))
    loss.backward()
    assert D.project.fc.weight.grad.abs().sum() > 0 and D.V.weight.grad.abs().sum() > 0
    MatchingAwareLoss("hinge").g_loss(D(fake, e)).backward()
    assert G.project.fc.weight.grad.abs().sum() > 0


def test_bad_inputs_are_refused():
    G, D = _nets()
    with pytest.raises(DataError, match="shape"):
        G(torch.randn(2, 6), torch.randn(2, 4))
    with pytest.raises(DataError, match="2 latents but 3 captions"):
        G(torch.randn(2, 6), torch.randn(3, 5))
    with pytest.raises(DataError, match="must exceed c_dim"):
        CaptionGenerator(create_generator("mlp", z_dim=3, hidden=8, img_shape=SHAPE), 5, 3)
    with pytest.raises(DataError, match="unconditional"):
        CaptionDiscriminator(create_discriminator("mlp", hidden=8, img_shape=SHAPE, num_classes=3), 5, 3)
