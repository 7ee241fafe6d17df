"""Mask generators: exact keep counts, disjoint index sets, seeding, errors."""

from __future__ import annotations

import math

import pytest
import torch

from fmlab.data.augment import BatchTransform, Compose
from fmlab.data.masks import (
    context_subset,
    mae_mask_fn,
    mp3_context_fn,
    num_kept,
    random_patch_mask,
)
from fmlab.errors import ConfigError


@pytest.mark.parametrize("length,ratio", [(64, 0.75), (49, 0.75), (10, 0.7), (16, 0.5),
                                          (7, 0.0), (100, 0.9)])
def test_mask_keeps_floor_l_one_minus_r_per_sample(length, ratio):
    g = torch.Generator().manual_seed(0)
    m = random_patch_mask(32, length, ratio, g)
    keep = math.floor(round(length * (1 - ratio), 9))
    assert m.ids_keep.shape == (32, keep) and m.ids_masked.shape == (32, length - keep)
    assert torch.all(m.mask.sum(1) == length - keep)
    for row in range(32):
        ids = torch.cat([m.ids_keep[row], m.ids_masked[row]]).sort().values
        assert torch.equal(ids, torch.arange(length))
        assert not m.mask[row, m.ids_keep[row]].any() and m.mask[row, m.ids_masked[row]].all()
    if 0 < keep < length:
        assert len({tuple(r.tolist()) for r in m.ids_keep}) > 1  # per-sample masks


def test_num_kept_edges_and_errors():
    assert num_kept(10, 0.9) == 1  # 10 * (1 - 0.9) is 0.9999999999999998 in floating point
    assert num_kept(64, 0.75) == 16
    with pytest.raises(ConfigError, match="mask_ratio"):
        num_kept(64, 1.0)
    with pytest.raises(ConfigError, match="keeps no token"):
        num_kept(4, 0.9)


def test_masks_are_seeded_and_use_the_global_rng_without_generator():
    a = random_patch_mask(4, 16, 0.5, torch.Generator().manual_seed(3))
    b = random_patch_mask(4, 16, 0.5, torch.Generator().manual_seed(3))
    assert torch.equal(a.ids_keep, b.ids_keep)
    torch.manual_seed(5)
    c = context_subset(4, 16, 0.5, None)
    torch.manual_seed(5)
    assert torch.equal(c, context_subset(4, 16, 0.5, None))


def test_mask_hooks_add_batch_keys():
    t = BatchTransform({"images": Compose([])}, masks=[mae_mask_fn(16, 0.75),
                                                       mp3_context_fn(16, 0.5)])
    out = t({"images": torch.zeros(3, 8, 8, 3, dtype=torch.uint8)},
            torch.Generator().manual_seed(0))
    assert out["ids_keep"].shape == (3, 4) and out["mask"].shape == (3, 16)
    assert out["context_ids"].shape == (3, 8)
