"""The CroCo pair generator: exact warps on pixel grids, seeded and bounded parameters."""

from __future__ import annotations

import math

import pytest
import torch

from fmlab.data.pairs import RandomWarp, homography, warp_images
from fmlab.errors import ConfigError, DataError


def _params(**kw) -> torch.Tensor:
    names = ("tx", "ty", "angle", "log_scale", "px", "py")
    return torch.tensor([[kw.get(n, 0.0) for n in names]])


def test_translation_by_whole_pixels_shifts_the_image():
    x = torch.rand(1, 3, 8, 8)
    out = warp_images(x, _params(tx=2 * 3 / 8))  # 3 pixels to the right in the source
    assert torch.allclose(out[..., :5], x[..., 3:], atol=1e-5)
    assert torch.equal(out[..., 5:], torch.zeros_like(out[..., 5:]))  # outside: 0


def test_quarter_turn_permutes_the_pixels():
    x = torch.rand(1, 2, 6, 6)
    out = warp_images(x, _params(angle=math.pi / 2))
    assert any(torch.allclose(out, torch.rot90(x, k, (2, 3)), atol=1e-5) for k in (1, 3))


def test_scale_and_perspective_enter_the_matrix():
    h = homography(_params(log_scale=math.log(2.0), px=0.1))[0]
    assert torch.allclose(h[:2, :2], 2 * torch.eye(2)) and h[2, 0] == pytest.approx(0.1)


def test_parameters_are_seeded_bounded_and_uniform():
    warp = RandomWarp(0.25, 0.3, 0.2, 0.05)
    p = warp.sample(20000, torch.Generator().manual_seed(0))
    again = warp.sample(20000, torch.Generator().manual_seed(0))
    assert torch.equal(p, again)
    bounds = torch.tensor([0.25, 0.25, 0.3, 0.2, 0.05, 0.05])
    assert bool((p.abs() <= bounds).all())
    assert torch.allclose(p.abs().mean(0), bounds / 2, rtol=0.03)  # |U(-b, b)| has mean b / 2


def test_bad_bounds_and_shapes_are_refused():
    with pytest.raises(ConfigError, match="bounds"):
        RandomWarp(max_shift=-1)
    with pytest.raises(DataError, match="shape"):
        warp_images(torch.rand(2, 3, 4, 4), torch.zeros(1, 6))
