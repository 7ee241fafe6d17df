"""uint8 data batches → GAN range [-1, 1], NCHW, with channel and size conversion."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fmlab.errors import DataError
from fmlab.gan.prep import to_gan_input


def test_range_layout_and_channel_conversion():
    rgb = np.random.default_rng(0).integers(0, 256, size=(2, 4, 5, 3), dtype=np.uint8)
    x = to_gan_input(rgb)
    assert x.shape == (2, 3, 4, 5) and x.dtype == torch.float32
    assert float(x[1, 2, 3, 4]) == pytest.approx(rgb[1, 3, 4, 2] / 127.5 - 1)
    assert to_gan_input(np.array([[[0, 255]]], dtype=np.uint8)).flatten().tolist() == [-1.0, 1.0]
    grey = to_gan_input(rgb, channels=1)
    luma = (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]) / 127.5 - 1
    np.testing.assert_allclose(grey[:, 0].numpy(), luma, atol=1e-5)
    mono = np.zeros((3, 6, 6), dtype=np.uint8)  # NHW greyscale
    assert to_gan_input(mono, channels=3, size=8).shape == (3, 3, 8, 8)


def test_resize_keeps_constant_images_and_range():
    const = np.full((1, 28, 28), 200, dtype=np.uint8)
    x = to_gan_input(const, size=32)
    assert x.shape == (1, 1, 32, 32)
    torch.testing.assert_close(x, torch.full_like(x, 200 / 127.5 - 1))


def test_bad_input_names_the_problem():
    with pytest.raises(DataError, match="must be uint8, got torch.float32"):
        to_gan_input(torch.zeros(1, 4, 4))
    with pytest.raises(DataError, match=r"C in \(1, 3\), got shape \(1, 4, 4, 2\)"):
        to_gan_input(np.zeros((1, 4, 4, 2), dtype=np.uint8))
