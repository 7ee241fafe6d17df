"""ParGANDA pieces: the classifier recipe is seeded, label preservation reduces to LeNet accuracy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fmlab.experiments.parganda import ClassifierRecipe, accuracy, label_preservation, train_classifier

pytestmark = pytest.mark.usefixtures("one_thread")


def _toy(n=64, seed=0):
    # class 0: a bright left half, class 1: a bright right half (trivially separable)
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.integers(0, 30, (n, 28, 28)).astype(np.uint8)
    for i, c in enumerate(y):
        x[i, :, 14 * c:14 * c + 14] = 220
    return x, y


def test_classifier_is_seeded_and_learns_a_separable_toy():
    x, y = _toy()
    r = ClassifierRecipe(steps=30, batch_size=16, max_shift=1)
    a, b = train_classifier(x, y, 3, r), train_classifier(x, y, 3, r)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    xt, yt = _toy(seed=1)
    assert accuracy(a, xt, yt) >= 0.9


def test_label_preservation_of_real_mnist_is_lenet_accuracy(data_root):
    from fmlab.data import open_source

    te = open_source("mnist", data_root).split("test")
    x, y = np.asarray(te.get_batch(np.arange(500))), np.asarray(te.labels)[:500]
    assert label_preservation(x, y, data_root) >= 0.97
    assert label_preservation(x, (y + 1) % 10, data_root) <= 0.03  # wrong labels are not kept
