"""DiffAugment: each op against its formula (loops), differentiability, seeding, policy errors."""

from __future__ import annotations

import pytest
import torch

from fmlab.errors import ConfigError
from fmlab.gan import diff_augment
from fmlab.gan.diffaugment import (
    brightness,
    contrast,
    cutout,
    cutout_size,
    random_cutout,
    random_translation,
    saturation,
    translate,
)


def _x(b=4, c=3, h=8, w=8, seed=0):
    return torch.randn(b, c, h, w, generator=torch.Generator().manual_seed(seed))


def test_colour_ops_match_formulas():
    x = _x()
    u = torch.tensor([0.0, 0.25, 0.5, 1.0])
    torch.testing.assert_close(brightness(x, u), x + (u - 0.5).view(-1, 1, 1, 1))
    out_s, out_c = saturation(x, u), contrast(x, u)
    for b in range(4):
        for i in range(8):
            for j in range(8):
                m = sum(x[b, c, i, j] for c in range(3)) / 3  # mean over channels
                for c in range(3):
                    assert float(out_s[b, c, i, j]) == pytest.approx(
                        float((x[b, c, i, j] - m) * 2 * u[b] + m), abs=1e-5)
        mean_all = float(x[b].sum()) / x[b].numel()
        ref = (x[b] - mean_all) * (u[b] + 0.5) + mean_all
        torch.testing.assert_close(out_c[b], ref, rtol=1e-5, atol=1e-5)


def test_translation_shifts_with_zero_padding():
    x = _x(b=3, c=2, h=6, w=5)
    dy, dx = torch.tensor([1, -2, 0]), torch.tensor([0, 1, -1])
    out = translate(x, dy, dx)
    for b in range(3):
        for i in range(6):
            for j in range(5):
                si, sj = i + int(dy[b]), j + int(dx[b])
                inside = 0 <= si < 6 and 0 <= sj < 5
                ref = x[b, :, si, sj] if inside else torch.zeros(2)
                torch.testing.assert_close(out[b, :, i, j], ref)
    # random shifts stay within ±⌊H/8 + ½⌋ = ±4 for 32×32: a one-hot pixel moves at most 4
    img = torch.zeros(200, 1, 32, 32)
    img[:, :, 16, 16] = 1.0
    moved = random_translation(img, torch.Generator().manual_seed(0))
    pos = moved.flatten(1).argmax(1)
    rows, cols = pos // 32 - 16, pos % 32 - 16
    assert rows.abs().max() == 4 and cols.abs().max() == 4  # full range is used
    assert set(rows.tolist()) == set(range(-4, 5))


def test_cutout_square_of_side_half_h():
    assert cutout_size(32, 32) == (16, 16) and cutout_size(7, 9) == (4, 5)
    x = torch.ones(2, 1, 8, 8)
    out = cutout(x, torch.tensor([4, 0]), torch.tensor([3, 7]), (4, 4))
    for b, (cy, cx) in enumerate([(4, 3), (0, 7)]):
        for i in range(8):
            for j in range(8):
                zeroed = cy - 2 <= i < cy + 2 and cx - 2 <= j < cx + 2
                assert float(out[b, 0, i, j]) == (0.0 if zeroed else 1.0)
    # random cutout on 32×32: interior squares have exactly 16×16 zeros, never more
    ones = torch.ones(300, 3, 32, 32)
    cut = random_cutout(ones, torch.Generator().manual_seed(0))
    zeros = (cut[:, 0] == 0).flatten(1).sum(1)
    assert zeros.max() == 16 * 16 and zeros.min() > 0
    assert (cut == 0).all(dim=1).eq((cut == 0).any(dim=1)).all()  # same mask on every channel


@pytest.mark.parametrize("policy", ["color", "translation", "cutout", "color,translation,cutout"])
def test_differentiable_and_seeded(policy):
    x = _x(b=5, h=16, w=16).requires_grad_(True)
    y1 = diff_augment(x, policy, torch.Generator().manual_seed(7))
    y2 = diff_augment(x, policy, torch.Generator().manual_seed(7))
    y3 = diff_augment(x, policy, torch.Generator().manual_seed(8))
    assert y1.shape == x.shape
    torch.testing.assert_close(y1, y2)
    assert not torch.equal(y1, y3)
    (y1 * torch.randn_like(y1)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_per_sample_draws():
    x = torch.zeros(64, 1, 4, 4)
    out = diff_augment(x, "brightness", torch.Generator().manual_seed(0))
    per_sample = out[:, 0, 0, 0]
    assert per_sample.unique().numel() == 64
    assert (out == per_sample[:, None, None, None]).all()
    assert per_sample.min() >= -0.5 and per_sample.max() <= 0.5


def test_unknown_policy_names_the_op():
    with pytest.raises(ConfigError, match="unknown DiffAugment op 'blur'.*cutout"):
        diff_augment(_x(), "color,blur")
    torch.testing.assert_close(diff_augment(_x(), ""), _x())
