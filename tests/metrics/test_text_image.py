"""R-precision, CLIPScore, attribute agreement and frame jitter on constructed embeddings."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fmlab.errors import DataError
from fmlab.metrics.text_image import attribute_agreement, clip_score, frame_jitter, r_precision


def test_r_precision_is_one_for_matching_embeddings_and_near_chance_for_random():
    g = torch.Generator().manual_seed(0)
    e = torch.randn(200, 16, generator=g)
    assert r_precision(e, e.clone(), n_distractors=9) == 1.0
    rand = r_precision(e, torch.randn(200, 16, generator=g), n_distractors=9, seed=1)
    assert abs(rand - 0.1) < 0.07


def test_r_precision_with_labels_draws_distractors_from_other_classes_only():
    labels = torch.arange(40) % 4
    protos = torch.eye(4)
    text = protos[labels]                  # every caption of a class embeds the same
    img = protos[labels] + 0.01 * torch.randn(40, 4, generator=torch.Generator().manual_seed(0))
    assert r_precision(img, text, n_distractors=5, labels=labels) == 1.0
    # without labels, same-class captions tie with the image's own and it is not strictly first
    assert r_precision(img, text, n_distractors=30) < 0.2
    with pytest.raises(DataError, match="fewer than n_distractors"):
        r_precision(img, text, n_distractors=31, labels=labels)


def test_clip_score_clamps_negative_cosines_and_scales():
    img = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    txt = torch.tensor([[2.0, 0.0], [-1.0, 0.0]])
    assert clip_score(img, txt) == pytest.approx(2.5 * (1 + 0) / 2)
    assert clip_score(img, txt, w=1.0) == pytest.approx(0.5)
    with pytest.raises(DataError, match="one caption per image"):
        clip_score(img, txt[:1])


def test_attribute_agreement_and_frame_jitter():
    assert attribute_agreement(np.array([1, 2, 3, 4]), np.array([1, 0, 3, 0])) == 0.5
    still = torch.ones(2, 5, 1, 4, 4)
    assert frame_jitter(still) == 0.0
    ramp = torch.arange(4.0).view(1, 4, 1, 1, 1).expand(3, 4, 1, 2, 2)
    assert frame_jitter(ramp) == pytest.approx(1.0)
    with pytest.raises(DataError):
        frame_jitter(torch.ones(2, 1, 1, 4, 4))
