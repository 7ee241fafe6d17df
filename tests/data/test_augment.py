"""Batched augmentations: shapes, ranges, seeding, and parity with torchvision per sample."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF

from fmlab.data import augment as A
from fmlab.errors import ConfigError, DataError


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Tiny tensors: one thread (see tests/conftest.py)."""


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def batch() -> torch.Tensor:
    return torch.rand(16, 3, 12, 12, generator=_gen(1))


def test_to_float_images_layouts_and_channels():
    rgb = np.random.default_rng(0).integers(0, 256, (4, 5, 6, 3), dtype=np.uint8)
    x = A.to_float_images(rgb)
    assert x.shape == (4, 3, 5, 6) and x.dtype == torch.float32
    assert abs(float(x[1, 2, 3, 4]) - rgb[1, 3, 4, 2] / 255.0) < 1e-6
    grey = torch.randint(0, 256, (4, 5, 6), dtype=torch.uint8)
    g3 = A.to_float_images(grey, channels=3)
    assert g3.shape == (4, 3, 5, 6) and torch.equal(g3[:, 0], g3[:, 2])
    back = A.to_float_images(rgb, channels=1)
    expect = (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]) / 255.0
    assert torch.allclose(back[:, 0], torch.from_numpy(expect).float(), atol=1e-6)
    with pytest.raises(DataError, match="uint8"):
        A.to_float_images(torch.zeros(2, 4, 4, 3))
    with pytest.raises(DataError, match="shape"):
        A.to_float_images(torch.zeros(2, 4, 4, 5, dtype=torch.uint8))


@pytest.mark.parametrize("op", [
    A.RandomResizedCrop(8), A.RandomHorizontalFlip(0.5),
    A.ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8), A.RandomGrayscale(0.5),
    A.GaussianBlur(3, p=0.5), A.Solarize(0.5, p=0.5), A.RandomCrop(12, 2)])
def test_ops_keep_dtype_range_and_replay_with_seed(op, batch):
    out = op(batch, _gen(7))
    assert out.dtype == torch.float32 and out.shape[:2] == batch.shape[:2]
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert torch.equal(out, op(batch, _gen(7)))
    assert not torch.equal(out, op(batch, _gen(8)))


def test_flip_really_flips(batch):
    assert torch.equal(A.RandomHorizontalFlip(1.0)(batch, _gen()), batch.flip(-1))
    assert torch.equal(A.RandomHorizontalFlip(0.0)(batch, _gen()), batch)
    out = A.RandomHorizontalFlip(0.5)(batch, _gen(3))
    flipped = [torch.equal(o, b.flip(-1)) for o, b in zip(out, batch)]
    kept = [torch.equal(o, b) for o, b in zip(out, batch)]
    assert all(f or k for f, k in zip(flipped, kept))
    assert any(flipped) and any(kept)


def test_rrc_boxes_respect_scale_ratio_and_bounds():
    op = A.RandomResizedCrop(8, scale=(0.2, 0.6), ratio=(0.5, 2.0))
    h, w = 40, 50
    boxes = op.sample_boxes(2000, h, w, _gen(0))
    bw, bh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    assert torch.all(boxes[:, :2] >= 0) and torch.all(boxes[:, 2] <= w)
    assert torch.all(boxes[:, 3] <= h)
    assert torch.equal(boxes, boxes.round())  # integer boxes, as torchvision samples them
    area = bw * bh / (h * w)
    # sides are rounded to integers: allow the area a rounding slack of one pixel per side
    slack = (bw + bh + 1) / (h * w)
    assert torch.all(area >= 0.2 - slack) and torch.all(area <= 0.6 + slack)
    aspect = bw / bh
    assert torch.all(aspect >= 0.5 * (1 - 2 / bh.clamp(min=1)))
    assert torch.all(aspect <= 2.0 * (1 + 2 / bw.clamp(min=1)))
    # offsets spread over the whole valid range
    assert float(boxes[:, 0].min()) == 0.0 and float((w - boxes[:, 2]).min()) == 0.0


def test_rrc_fallback_is_a_ratio_clamped_centre_crop():
    op = A.RandomResizedCrop(4, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    boxes = op.sample_boxes(3, 10, 20, _gen())  # a 10x20 image never fits a square of area 200
    assert torch.equal(boxes, torch.tensor([[5.0, 0.0, 15.0, 10.0]] * 3))


def test_crop_and_resize_identity_and_exact_crops(batch):
    op = A.RandomResizedCrop(12, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    assert torch.allclose(op(batch, _gen()), batch, atol=1e-6)
    boxes = torch.tensor([[2.0, 3.0, 8.0, 7.0]]).repeat(batch.shape[0], 1)
    out = A.crop_and_resize(batch, boxes, (4, 6))
    assert torch.allclose(out, batch[:, :, 3:7, 2:8], atol=1e-6)


def test_crop_and_resize_downscale_matches_area_average():
    x = torch.rand(2, 3, 8, 8, generator=_gen(2))
    boxes = torch.tensor([[0.0, 0.0, 8.0, 8.0]] * 2)
    out = A.crop_and_resize(x, boxes, (4, 4))  # 2x2 bins, 2 samples each way at pixel centres
    assert torch.allclose(out, torch.nn.functional.avg_pool2d(x, 2), atol=1e-6)


def test_color_jitter_matches_torchvision_per_sample(batch):
    op = A.ColorJitter(0.4, 0.4, 0.4, 0.1, p=1.0, random_order=True)
    params = op.sample(batch.shape[0], _gen(5), batch.device)
    out = op.apply(batch, params)
    fns = [lambda im, i: TF.adjust_brightness(im, float(params["b"][i])),
           lambda im, i: TF.adjust_contrast(im, float(params["c"][i])),
           lambda im, i: TF.adjust_saturation(im, float(params["s"][i])),
           lambda im, i: TF.adjust_hue(im, float(params["h"][i]))]
    for i in range(batch.shape[0]):
        ref = batch[i]
        assert sorted(params["order"][i].tolist()) == [0, 1, 2, 3]
        for op_id in params["order"][i].tolist():
            ref = fns[op_id](ref, i)
        assert torch.allclose(out[i], ref, atol=1e-4), i
    orders = {tuple(o.tolist()) for o in params["order"]}
    assert len(orders) > 1  # the order is drawn per sample


def test_color_jitter_fixed_order_and_grey_input():
    x = torch.rand(6, 3, 5, 5, generator=_gen(4))
    op = A.ColorJitter(0.5, 0.5, 0.5, 0.2, random_order=False)
    params = op.sample(6, _gen(1), x.device)
    out = op.apply(x, params)
    for i in range(6):
        ref = TF.adjust_brightness(x[i], float(params["b"][i]))
        ref = TF.adjust_contrast(ref, float(params["c"][i]))
        ref = TF.adjust_saturation(ref, float(params["s"][i]))
        ref = TF.adjust_hue(ref, float(params["h"][i]))
        assert torch.allclose(out[i], ref, atol=1e-4)
    grey = torch.rand(6, 1, 5, 5, generator=_gen(4))
    out = op.apply(grey, params)
    ref = torch.stack([TF.adjust_contrast(TF.adjust_brightness(grey[i], float(params["b"][i])),
                                          float(params["c"][i])) for i in range(6)])
    assert torch.allclose(out, ref, atol=1e-5)
    with pytest.raises(ConfigError, match="hue"):
        A.ColorJitter(hue=0.7)


def test_hsv_round_trip():
    x = torch.rand(3, 3, 7, 7, generator=_gen(9))
    assert torch.allclose(A.hsv_to_rgb(A.rgb_to_hsv(x)), x, atol=1e-5)


def test_grayscale_blur_solarize_normalize(batch):
    g = A.RandomGrayscale(1.0)(batch, _gen())
    luma = 0.299 * batch[:, 0] + 0.587 * batch[:, 1] + 0.114 * batch[:, 2]
    assert torch.allclose(g, luma.unsqueeze(1).expand_as(batch), atol=1e-6)

    blur = A.GaussianBlur(5, sigma=(0.5, 1.5), p=1.0)
    params = blur.sample(batch.shape[0], _gen(2), batch.device)
    out = blur.apply(batch, params)
    for i in range(batch.shape[0]):
        s = float(params["sigma"][i])
        ref = TF.gaussian_blur(batch[i], [5, 5], [s, s])
        assert torch.allclose(out[i], ref, atol=1e-5)

    sol = A.Solarize(0.4, p=1.0)(batch, _gen())
    assert torch.equal(sol, torch.where(batch >= 0.4, 1 - batch, batch))

    norm = A.Normalize((0.5, 0.4, 0.3), (0.2, 0.3, 0.4))(batch)
    assert torch.allclose(norm[:, 1], (batch[:, 1] - 0.4) / 0.3)


def test_random_crop_is_a_window_of_the_padded_image():
    x = torch.rand(5, 3, 6, 6, generator=_gen(3))
    out = A.RandomCrop(6, padding=2)(x, _gen(1))
    padded = torch.nn.functional.pad(x, [2] * 4)
    for i in range(5):
        hits = [(y, z) for y in range(5) for z in range(5)
                if torch.equal(out[i], padded[i, :, y:y + 6, z:z + 6])]
        assert hits, i


def test_probability_is_per_sample(batch):
    out = A.Solarize(0.0, p=0.5)(batch, _gen(11))  # threshold 0: solarising inverts everything
    changed = [not torch.equal(o, b) for o, b in zip(out, batch)]
    assert 0 < sum(changed) < len(changed)
    for o, b, c in zip(out, batch, changed):
        assert torch.equal(o, 1 - b) if c else torch.equal(o, b)


def test_simclr_transform_seeded_two_views_and_passthrough():
    imgs = torch.randint(0, 256, (8, 32, 32, 3), dtype=torch.uint8, generator=_gen())
    labels = torch.arange(8)
    t = A.BatchTransform({"views": [A.simclr_view(32), A.simclr_view(32)]})
    a = t({"images": imgs, "labels": labels}, _gen(3))
    b = t({"images": imgs, "labels": labels}, _gen(3))
    assert len(a["views"]) == 2 and a["views"][0].shape == (8, 3, 32, 32)
    assert all(torch.equal(u, v) for u, v in zip(a["views"], b["views"]))
    assert not torch.equal(a["views"][0], a["views"][1])
    assert a["labels"] is labels and "images" not in a
    # normalised output: roughly zero-centred, values beyond [0, 1]
    assert float(a["views"][0].min()) < 0.0


def test_dino_views_sizes():
    views = A.dino_views(32, 16, 3)
    t = A.BatchTransform(views)
    out = t({"images": torch.randint(0, 256, (4, 32, 32, 3), dtype=torch.uint8)}, _gen())
    assert [v.shape[-1] for v in out["global_views"]] == [32, 32]
    assert [v.shape[-1] for v in out["local_views"]] == [16, 16, 16]


def test_bad_arguments_name_the_value():
    with pytest.raises(ConfigError, match="scale"):
        A.RandomResizedCrop(8, scale=(0.5, 0.2))
    with pytest.raises(ConfigError, match="p must be"):
        A.RandomHorizontalFlip(1.5)
    with pytest.raises(ConfigError, match="kernel_size"):
        A.GaussianBlur(4)
    with pytest.raises(DataError, match="'images'"):
        A.BatchTransform({"x": A.Compose([])})({"img": 1}, _gen())


def test_rrc_area_distribution_is_not_degenerate():
    op = A.RandomResizedCrop(8, scale=(0.08, 1.0))
    boxes = op.sample_boxes(4000, 32, 32, _gen(0))
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) / 1024
    # uniform area in [0.08, 1], minus rejections of too-wide boxes: mean well inside the range
    assert 0.35 < float(area.mean()) < 0.6
    assert math.isclose(float(area.min()), 0.08, abs_tol=0.03)
