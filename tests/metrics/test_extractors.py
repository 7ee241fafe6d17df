"""Backbone-based extractors, quantisation and the registry."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from fmlab.errors import DataError, ModelError
from fmlab.metrics.extractors import EXTRACTORS, create_extractor, to_uint8


def test_registry_lists_the_named_extractors():
    assert {"inception_v3", "lenet5_mnist", "resnet56_cifar"} <= set(EXTRACTORS)
    with pytest.raises(ModelError, match="unknown feature extractor 'nope'"):
        create_extractor("nope")


@pytest.mark.filterwarnings("ignore:feature extractor")
def test_backbone_extractor_matches_the_backbone_and_batches_do_not_matter():
    from fmlab.models import create_backbone

    torch.manual_seed(0)
    ext = create_extractor("resnet20_cifar", batch_size=3)
    torch.manual_seed(0)
    bb = create_backbone("resnet20_cifar").eval()
    imgs = np.random.default_rng(0).integers(0, 256, (7, 32, 32, 3), dtype=np.uint8)
    feats, probs = ext.extract(imgs, probs=True)
    with torch.no_grad():
        ref_f = bb.encode(torch.from_numpy(imgs)).double().numpy()
        ref_p = torch.softmax(bb(torch.from_numpy(imgs)).double(), 1).numpy()
    assert feats.dtype == np.float64 and feats.shape == (7, 64)
    np.testing.assert_allclose(feats, ref_f, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(probs, ref_p, rtol=1e-5, atol=1e-7)
    ext.batch_size = 100
    np.testing.assert_allclose(ext(imgs), feats, rtol=1e-5, atol=1e-6)
    assert ext.protocol["extractor"] == "resnet20_cifar"
    assert ext.protocol["weights_sha256"] is None and ext.protocol["input_size"] == [32, 32]
    with pytest.raises(DataError, match=r"\(N, H, W\) or \(N, H, W, C\)"):
        ext(np.zeros((2, 32, 32, 2), np.uint8))


@pytest.mark.filterwarnings("ignore:feature extractor")
def test_extractor_without_head_refuses_probabilities():
    ext = create_extractor("resnet20_cifar", num_classes=0)
    with pytest.raises(ModelError, match="no classifier"):
        ext.extract(np.zeros((2, 32, 32, 3), np.uint8), probs=True)


def test_to_uint8_rounds_and_clips():
    x = torch.tensor([-1.5, -1.0, -0.999, 0.0, 0.999, 1.0, 2.0])
    assert to_uint8(x).tolist() == [0, 0, 0, 128, 255, 255, 255]
    assert to_uint8(np.array([0.0, 0.5, 1.0]), value_range=(0, 1)).tolist() == [0, 128, 255]
    with pytest.raises(DataError, match="value_range"):
        to_uint8(x, value_range=(1, 1))


def _data_root():
    root = os.environ.get("FMLAB_DATA")
    if not root:
        pytest.skip("FMLAB_DATA is not set: the LeNet-5 MNIST weights are needed")
    return Path(root)


def test_lenet5_mnist_extractor_classifies_mnist():
    root = _data_root()
    ext = create_extractor("lenet5_mnist",
                           weights=root / "weights/mnist_small/lenet_epoch=12_test_acc=0.991.pth")
    d = np.load(root / "mnist/mnist.npz")
    feats, probs = ext.extract(d["x_test"][:500], probs=True)
    assert feats.shape == (500, 84) and (feats >= 0).all()  # after f6's ReLU
    assert (probs.argmax(1) == d["y_test"][:500]).mean() > 0.97
    assert ext.protocol["weights_sha256"].startswith("7b3591ba")
