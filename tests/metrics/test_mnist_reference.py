"""The MNIST FID reference point of the issue (slow: 20,000 LeNet-5 forward passes)."""

import os
from pathlib import Path

import numpy as np
import pytest

from fmlab.metrics import create_extractor, fid


@pytest.mark.slow
def test_mnist_test_vs_first_10k_train_fid_is_about_1_2():
    root = os.environ.get("FMLAB_DATA")
    if not root:
        pytest.skip("FMLAB_DATA is not set: MNIST and the LeNet-5 weights are needed")
    root = Path(root)
    ext = create_extractor(
        "lenet5_mnist", weights=root / "weights/mnist_small/lenet_epoch=12_test_acc=0.991.pth")
    data = np.load(root / "mnist/mnist.npz")
    value = fid(ext(data["x_test"]), ext(data["x_train"][:10_000]))
    assert value == pytest.approx(1.2, abs=0.1)  # published reference point: ~1.2
