"""TF1 resize and the FID-Inception architecture (random init: shapes, layout, pooling rules)."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision

from fmlab.errors import DataError, ModelError
from fmlab.metrics.extractors import create_extractor
from fmlab.metrics.inception import FIDInceptionV3
from fmlab.metrics.resize import tf1_bilinear_resize


def _tf1_loop(img, out_h, out_w):
    """TF1 legacy bilinear written pixel by pixel: src = dst * in / out, edge-clamped."""
    in_h, in_w = img.shape
    out = np.zeros((out_h, out_w))
    for i in range(out_h):
        y = i * in_h / out_h
        y0 = math.floor(y)
        y1, fy = min(y0 + 1, in_h - 1), y - y0
        for j in range(out_w):
            x = j * in_w / out_w
            x0 = math.floor(x)
            x1, fx = min(x0 + 1, in_w - 1), x - x0
            top = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
            bot = img[y1, x0] * (1 - fx) + img[y1, x1] * fx
            out[i, j] = top * (1 - fy) + bot * fy
    return out


@pytest.mark.parametrize("in_hw,out_hw", [((5, 7), (13, 11)), ((32, 32), (299, 299)),
                                          ((9, 9), (4, 6))])
def test_tf1_resize_matches_pixel_loop(in_hw, out_hw):
    rng = np.random.default_rng(0)
    img = rng.uniform(0, 255, in_hw)
    ours = tf1_bilinear_resize(torch.from_numpy(img)[None, None], out_hw)[0, 0].numpy()
    np.testing.assert_allclose(ours, _tf1_loop(img, *out_hw), atol=1e-9)


def test_tf1_resize_is_not_half_pixel_bilinear():
    x = torch.arange(4.0).view(1, 1, 1, 4).expand(1, 1, 2, 4)
    ours = tf1_bilinear_resize(x, (2, 8))[0, 0, 0]
    # Output pixel d samples input d/2: 0, .5, 1, ..., 3, then the clamped edge 3.
    assert ours.tolist() == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.0]
    torch_bilinear = F.interpolate(x, size=(2, 8), mode="bilinear", align_corners=False)[0, 0, 0]
    assert not torch.allclose(ours, torch_bilinear)
    assert tf1_bilinear_resize(x, (2, 4)) is x  # same size: untouched


def test_fid_inception_has_the_pt_inception_layout():
    # The pytorch port of the TF weights is a torchvision Inception-v3 with 1008 classes and no
    # aux head: same keys, same shapes, so such a state dict loads strictly.
    ours = FIDInceptionV3().state_dict()
    tv = torchvision.models.inception_v3(weights=None, aux_logits=False, num_classes=1008,
                                         init_weights=False).state_dict()
    assert list(ours) == list(tv)
    assert all(ours[k].shape == tv[k].shape for k in ours)


def test_fid_inception_pooling_ignores_padding():
    # Mixed_5b must equal torchvision's InceptionA except on the 1-pixel border, where TF's
    # average pool divides by the number of real (unpadded) pixels.
    torch.manual_seed(0)
    net = FIDInceptionV3().eval()
    tv = torchvision.models.inception.InceptionA(192, pool_features=32).eval()
    tv.load_state_dict(net.Mixed_5b.state_dict())
    x = torch.randn(1, 192, 9, 9)
    with torch.no_grad():
        a, b = net.Mixed_5b(x), tv(x)
    assert torch.allclose(a[..., 1:-1, 1:-1], b[..., 1:-1, 1:-1], atol=1e-5)
    assert not torch.allclose(a[..., 0, :], b[..., 0, :], atol=1e-3)
    # Mixed_7c's pooling branch is a max pool: its output differs from torchvision's avg pool.
    tv_e = torchvision.models.inception.InceptionE(2048).eval()
    tv_e.load_state_dict(net.Mixed_7c.state_dict())
    y = torch.randn(1, 2048, 3, 3)
    with torch.no_grad():
        assert not torch.allclose(net.Mixed_7c(y)[:, -192:], tv_e(y)[:, -192:], atol=1e-3)
        assert torch.allclose(net.Mixed_7c(y)[:, :-192], tv_e(y)[:, :-192], atol=1e-5)


def test_inception_extractor_shapes_protocol_and_weights(tmp_path):
    # Kept to three 299x299 forward passes: they dominate this test's time on a CPU.
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match="random weights"):
        ext = create_extractor("inception_v3", batch_size=2)
    imgs = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    feats, probs = ext.extract(imgs, probs=True)
    assert feats.shape == (2, 2048) and feats.dtype == np.float64
    assert probs.shape == (2, 1008)
    np.testing.assert_allclose(probs.sum(1), 1.0)
    grey = ext.prepare(torch.from_numpy(imgs[..., 0]))  # (N, H, W) grey is replicated to RGB
    assert grey.shape == (2, 3, 32, 32) and torch.equal(grey[:, 0], grey[:, 2])
    assert ext.protocol["resize"].startswith("tf1_bilinear")
    assert ext.protocol["input_size"] == [299, 299] and ext.protocol["weights_sha256"] is None

    path = tmp_path / "pt_inception.pth"
    torch.save(ext.net.state_dict(), path)
    loaded = create_extractor("inception_v3", weights=path, batch_size=2)
    assert loaded.protocol["weights_sha256"] is not None
    np.testing.assert_allclose(loaded(imgs[:1]), feats[:1], rtol=1e-5, atol=1e-6)

    bad = tmp_path / "bad.pth"
    torch.save({"fc.weight": torch.zeros(3, 3)}, bad)
    with pytest.raises(ModelError, match="not FID-Inception"):
        create_extractor("inception_v3", weights=bad)
    with pytest.raises(DataError, match="must be uint8"):
        ext(imgs.astype(np.float32))
