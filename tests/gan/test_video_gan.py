"""TGANs-C nets: shapes, what each discriminator can and cannot see, the temporal penalty."""

from __future__ import annotations

import pytest
import torch

from fmlab.errors import ConfigError, DataError
from fmlab.gan.video import (
    FrameDiscriminator,
    MotionDiscriminator,
    VideoDiscriminator,
    VideoGenerator,
    minibatch_std,
    temporal_coherence_penalty,
)

E = 6


def _clips(b: int = 3, t: int = 8, s: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, t, 1, s, s, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_generator_makes_clips_in_range_and_depends_on_the_caption():
    torch.manual_seed(0)
    G = VideoGenerator(z_dim=8, e_dim=E, c_dim=4, frames=8, size=16, ch=4).eval()
    z, e = torch.randn(2, 8), torch.randn(2, E)
    x = G(z, e)
    assert x.shape == (2, 8, 1, 16, 16) and x.abs().max() <= 1
    assert not torch.allclose(x, G(z, e + 1.0))
    with pytest.raises(ConfigError, match="frames must be a multiple of 4"):
        VideoGenerator(frames=6)
    with pytest.raises(DataError, match="z must be"):
        G(torch.randn(2, 7), e)


def test_frame_discriminator_is_blind_to_frame_order():
    torch.manual_seed(0)
    D = FrameDiscriminator(e_dim=E, c_dim=4, ch=4).eval()  # no power-iteration update per call
    x, e = _clips(), torch.randn(3, E)
    perm = torch.randperm(8)
    torch.testing.assert_close(D(x, e), D(x[:, perm], e))


def test_motion_discriminator_sees_only_differences():
    torch.manual_seed(0)
    D = MotionDiscriminator(e_dim=E, c_dim=4, ch=4).eval()
    x, e = _clips(), torch.randn(3, E)
    static = torch.rand(3, 1, 1, 16, 16)  # the same picture added to every frame
    torch.testing.assert_close(D(x, e), D(x + static, e))
    video = VideoDiscriminator(e_dim=E, c_dim=4, ch=4).eval()
    assert not torch.allclose(video(x, e), video(x + static, e))


def test_matching_head_is_psi_plus_projection():
    torch.manual_seed(0)
    D = VideoDiscriminator(e_dim=E, c_dim=4, ch=4).eval()
    x, e = _clips(), torch.randn(3, E)
    phi = D.embed(x)
    h = D.head
    direct = h.psi(phi).squeeze(1) + (torch.nn.functional.leaky_relu(h.project.fc(e), 0.2)
                                      * (phi @ h.V.weight.T)).sum(1)
    torch.testing.assert_close(D(x, e), direct)
    with pytest.raises(DataError, match="videos must have shape"):
        D(torch.zeros(3, 8, 3, 16, 16), e)


def test_temporal_penalty_formula_and_zero_for_static_clips():
    phi = torch.randn(4, 5, 7)
    direct = sum(((phi[:, t + 1] - phi[:, t]) ** 2).sum(1) for t in range(4)).mean() / 4
    torch.testing.assert_close(temporal_coherence_penalty(phi), direct)
    D = FrameDiscriminator(e_dim=E, c_dim=4, ch=4)
    still = _clips(t=1).expand(3, 8, 1, 16, 16)
    with torch.no_grad():
        assert float(temporal_coherence_penalty(D.frame_features(still))) == 0.0
    with pytest.raises(DataError, match="T >= 2"):
        temporal_coherence_penalty(torch.zeros(2, 1, 3))


def test_minibatch_std_against_a_loop_and_its_groups():
    phi = torch.randn(8, 5, generator=torch.Generator().manual_seed(0))
    got = minibatch_std(phi, group=4)
    for i in range(8):  # groups are strided: i, i + 2, i + 4, i + 6
        members = phi[i % 2::2]
        want = members.var(0, unbiased=False).add(1e-8).sqrt().mean()
        torch.testing.assert_close(got[i, 0], want)
    assert minibatch_std(phi[:6], group=4).unique().numel() == 1  # 6 % 4: one group of all
    collapsed = phi[:1].repeat(8, 1)
    assert float(minibatch_std(collapsed).max()) < 1e-3  # a collapsed G is visible to D


def test_mbstd_discriminators_see_the_batch_and_keep_frame_order_blindness():
    torch.manual_seed(0)
    x, e = _clips(b=4), torch.randn(4, E)
    video = VideoDiscriminator(e_dim=E, c_dim=4, ch=4, mbstd=True).eval()
    assert video.head.psi.in_features == video.feature_dim + 1
    other = x.clone()
    other[1:] = x[:1]  # the same first clip, but the rest of the batch collapsed onto it
    assert not torch.allclose(video(x, e)[0], video(other, e)[0])
    frame = FrameDiscriminator(e_dim=E, c_dim=4, ch=4, mbstd=True).eval()
    perm = torch.randperm(8)
    torch.testing.assert_close(frame(x, e), frame(x[:, perm], e))
