"""Canvas detector (ParGANDA, issue 24): mAP@0.5 hand cases, CenterNet targets, decode, a tiny train."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fmlab.detect import TinyCenterNet, centre_targets, decode, focal_loss
from fmlab.metrics.detection import box_iou, detection_map

GT = [(np.array([[0, 0, 10, 10], [20, 20, 40, 40]]), np.array([1, 2])),
      (np.array([[5, 5, 25, 25]]), np.array([1]))]


def _det(boxes, scores, labels):
    return np.array(boxes, float).reshape(-1, 4), np.array(scores, float), np.array(labels)


def test_map_perfect_detections_is_one():
    dets = [_det(b, np.linspace(0.9, 0.5, len(lab)), lab) for b, lab in GT]
    ap, m = detection_map(dets, GT, num_classes=4)
    assert m == 1.0 and ap[1] == ap[2] == 1.0 and np.isnan(ap[0]) and np.isnan(ap[3])


def test_map_duplicate_is_false_positive():
    # class 1: a duplicate of image 0's box ranked above image 1's true box -> precision 2/3 there
    dets = [_det([[0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 40, 40]], [0.9, 0.8, 0.9], [1, 1, 2]),
            _det([[5, 5, 25, 25]], [0.7], [1])]
    ap, _ = detection_map(dets, GT, num_classes=3)
    assert ap[1] == pytest.approx(0.5 * 1.0 + 0.5 * 2 / 3)
    assert ap[2] == 1.0


def test_map_wrong_class_and_low_iou_do_not_count():
    dets = [_det([[0, 0, 10, 10], [20, 20, 40, 40]], [0.5, 0.9], [2, 2]),   # class 1 box called 2
            _det([[15, 15, 35, 35]], [0.9], [1])]                           # IoU 1/7 < 0.5
    ap, m = detection_map(dets, GT, num_classes=3)
    assert ap[1] == 0.0 and ap[2] == 1.0 and m == 0.5
    assert box_iou([[5, 5, 25, 25]], [[15, 15, 35, 35]])[0, 0] == pytest.approx(100 / 700)


def test_heatmap_peak_is_one_at_each_box_centre():
    g = torch.Generator().manual_seed(0)
    xy = torch.randint(0, 40, (4, 3, 2), generator=g).float()
    wh = torch.randint(8, 24, (4, 3, 2), generator=g).float()
    boxes = torch.cat([xy, xy + wh], -1)
    labels = torch.randint(0, 10, (4, 3), generator=g)
    labels[1, 2] = -1
    t = centre_targets(boxes, labels, num_classes=10, size=64)
    assert t["heat"].max() == 1.0
    for b in range(4):
        for k in range(3):
            if labels[b, k] < 0:
                continue
            cx, cy = (boxes[b, k, 0::2].sum() / 8).floor().long(), (boxes[b, k, 1::2].sum() / 8).floor().long()
            assert t["heat"][b, labels[b, k], cy, cx] == 1.0
    assert int(t["heat"].eq(1).sum()) <= int((labels >= 0).sum())


def test_decode_recovers_boxes_from_perfect_target():
    boxes = torch.tensor([[[4.0, 8.0, 24.0, 30.0], [36.0, 30.0, 60.0, 62.0], [-1, -1, -1, -1]]])
    labels = torch.tensor([[3, 7, -1]])
    t = centre_targets(boxes, labels, num_classes=10, size=64)
    got, scores, cls = decode({"heat": t["heat"], "wh": t["wh"], "off": t["off"]}, k=2)
    order = cls[0].argsort()
    assert cls[0][order].tolist() == [3, 7] and scores.min() == 1.0
    assert torch.allclose(got[0][order], boxes[0, :2], atol=1e-4)


def test_focal_loss_of_a_perfect_prediction_is_near_zero():
    target = torch.zeros(1, 2, 8, 8)
    target[0, 1, 3, 4] = 1.0
    logit = torch.where(target == 1, torch.tensor(20.0), torch.tensor(-20.0))
    assert focal_loss(logit, target) < 1e-6
    assert focal_loss(torch.zeros_like(target), target) > math.log(2) * 0.25   # p = 0.5 at the centre


def test_tiny_end_to_end_train_runs():
    from fmlab.experiments.parganda_detect import DetectorRecipe, canvas_map, grey_canvases, train_detector

    pool = np.zeros((10, 28, 28), np.uint8)
    for c in range(10):
        pool[c, 4 + c: 14 + c, 6:22] = 255
    canv = grey_canvases(pool, np.arange(10), 16, seed=0)
    assert canv["images"].shape == (16, 1, 64, 64) and canv["images"].max() > 200
    net = train_detector(canv, seed=0, recipe=DetectorRecipe(steps=3, batch_size=8, width=8))
    ap, m = canvas_map(net, canv)
    assert isinstance(net, TinyCenterNet) and ap.shape == (10,) and 0.0 <= m <= 1.0
