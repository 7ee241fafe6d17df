"""DITO (reduced): region features, aggregated region-text InfoNCE, box retrieval and its AP."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fmlab.errors import ConfigError, DataError
from fmlab.metrics.detection import box_retrieval_ap, mean_box_retrieval_ap
from fmlab.models import create_backbone
from fmlab.multimodal.losses import clip_loss
from fmlab.multimodal.region import (
    CaptionEncoder,
    RegionEncoder,
    RegionTextObjective,
    canvas_region_batch,
    caption_tokens,
    info_nce,
    region_features,
    region_text_scores,
    sample_boxes,
)
from fmlab.multimodal.region_eval import box_retrieval, candidate_boxes, split_classes

WIDTH = 16


def _encoder(seed: int = 0, **kw) -> RegionEncoder:
    torch.manual_seed(seed)
    return RegionEncoder(create_backbone("resnet_cifar", depth=8, width=8, seed=seed), WIDTH, **kw)


def _canvas(n: int = 8, size: int = 32) -> dict:
    """Tiny canvases over a synthetic pool: three distinct shapes as classes 0, 1, 2."""
    from fmlab.data.synthetic.canvas import render_canvas

    pool = np.zeros((6, 12, 12), np.uint8)
    pool[0::3, 2:10, 2:10] = 255  # filled square
    pool[1::3, 5:7, :] = 255  # cross
    pool[1::3, :, 5:7] = 255
    pool[2::3, 2:10:2, 2:10] = 255  # stripes
    return render_canvas(pool, np.arange(6) % 3, np.arange(n), seed=0, size=size, max_objects=2,
                         class_names=["square", "cross", "stripes"])


@pytest.mark.parametrize("output_size,sampling_ratio", [(1, 8), (2, 4), (4, 2), (2, -1)])
def test_whole_image_roi_align_equals_global_average_pooling(output_size, sampling_ratio):
    # With aligned=True the whole-image box's sample points are exactly the map's cell centres when
    # output_size * sampling_ratio = H (adaptive sampling gives ceil(H / output_size), the same here).
    fmap = torch.randn(3, 5, 8, 8, dtype=torch.float64)
    boxes = torch.tensor([[0.0, 0.0, 32.0, 32.0]]).expand(3, 1, 4)
    got = region_features(fmap, boxes, 32, output_size, sampling_ratio)
    torch.testing.assert_close(got[:, 0], fmap.mean(dim=(2, 3)), rtol=1e-12, atol=1e-12)


def test_encoder_whole_image_region_is_the_global_embedding():
    enc = _encoder().eval()
    images = torch.randint(0, 256, (2, 32, 32, 3), dtype=torch.uint8)
    whole = torch.tensor([[0.0, 0.0, 32.0, 32.0]]).expand(2, 1, 4)
    with torch.no_grad():
        torch.testing.assert_close(enc(images, whole)[:, 0], enc.global_embed(images), rtol=1e-5, atol=1e-5)


def test_small_box_reads_only_its_part_of_the_map():
    fmap = torch.zeros(1, 1, 8, 8)
    fmap[..., :4, :4] = 1.0  # top-left quadrant
    boxes = torch.tensor([[[0.0, 0.0, 16.0, 16.0], [16.0, 16.0, 32.0, 32.0]]])
    got = region_features(fmap, boxes, 32, 2, 2)[0, :, 0]
    torch.testing.assert_close(got, torch.tensor([1.0, 0.0]))


@pytest.mark.parametrize("aggregate", ["max", "softmax", "mean"])
def test_one_region_reduces_to_image_level_clip(aggregate):
    g = torch.Generator().manual_seed(0)
    img, txt = torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g)
    scores = region_text_scores(img[:, None], txt, aggregate)
    torch.testing.assert_close(scores, F.normalize(img, dim=-1) @ F.normalize(txt, dim=-1).t())
    torch.testing.assert_close(info_nce(scores, 0.1), clip_loss(img, txt, 10.0))


def test_softmax_aggregate_lies_between_mean_and_max_and_tends_to_max():
    g = torch.Generator().manual_seed(1)
    reg, txt = torch.randn(3, 5, 8, generator=g), torch.randn(4, 8, generator=g)
    mx, mean = region_text_scores(reg, txt, "max"), region_text_scores(reg, txt, "mean")
    soft = region_text_scores(reg, txt, "softmax", beta=0.1)
    assert bool((soft <= mx + 1e-6).all() and (soft >= mean - 1e-6).all())
    torch.testing.assert_close(region_text_scores(reg, txt, "softmax", beta=1e-4), mx, atol=1e-4, rtol=0)
    torch.testing.assert_close(region_text_scores(reg, txt, "softmax", beta=1e4), mean, atol=1e-4, rtol=0)


def test_info_nce_hand_computed_2x2():
    s = torch.tensor([[1.0, 0.0], [0.5, 1.0]])
    tau = 0.5

    def ce(logits, t):
        return -logits[t] + math.log(sum(math.exp(v) for v in logits))

    rows = [ce([1 / tau, 0.0], 0), ce([0.5 / tau, 1 / tau], 1)]
    cols = [ce([1 / tau, 0.5 / tau], 0), ce([0.0, 1 / tau], 1)]
    expected = 0.5 * (sum(rows) / 2 + sum(cols) / 2)
    assert info_nce(s, tau).item() == pytest.approx(expected, rel=1e-6)


def test_box_retrieval_ap_hand_examples():
    assert box_retrieval_ap([0.9, 0.8, 0.3, 0.1], [True, True, False, False]) == 1.0
    # all 3 negatives first, then 2 positives: (1/4 + 2/5) / 2
    assert box_retrieval_ap([0.9, 0.8, 0.7, 0.2, 0.1], [False, False, False, True, True]) == pytest.approx(0.325)
    # positives at ranks 1 and 3: (1/1 + 2/3) / 2
    assert box_retrieval_ap([3.0, 2.0, 1.0], [True, False, True]) == pytest.approx(5 / 6)
    assert math.isnan(box_retrieval_ap([1.0, 0.0], [False, False]))
    ap, mean = mean_box_retrieval_ap([[2.0, 1.0, 0.0], [2.0, 1.0, 0.0], [0.0, 0.0, 0.0]],
                                     [[True, False, False], [False, False, True], [False, False, False]])
    assert ap[:2].tolist() == pytest.approx([1.0, 1 / 3]) and math.isnan(ap[2])
    assert mean == pytest.approx(2 / 3)


def test_box_retrieval_ap_matches_sklearn_without_ties():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    s, m = rng.normal(size=50), rng.random(50) < 0.3
    assert box_retrieval_ap(s, m) == pytest.approx(sk.average_precision_score(m, s))


def test_sample_boxes_seeded_inside_the_image_whole_image_first():
    a = sample_boxes(3, (32, 48), 6, torch.Generator().manual_seed(5))
    b = sample_boxes(3, (32, 48), 6, torch.Generator().manual_seed(5))
    torch.testing.assert_close(a, b)
    assert a[:, 0].tolist() == [[0.0, 0.0, 48.0, 32.0]] * 3
    assert bool((a[..., 0] >= 0).all() and (a[..., 1] >= 0).all() and (a[..., 2] <= 48).all()
                and (a[..., 3] <= 32).all() and (a[..., 2] > a[..., 0]).all() and (a[..., 3] > a[..., 1]).all())
    c = sample_boxes(3, (32, 48), 6, torch.Generator().manual_seed(6))
    assert not torch.equal(a, c)


def test_candidate_boxes_label_true_boxes_and_background():
    tb = torch.tensor([[[0.0, 0.0, 8.0, 8.0], [20.0, 20.0, 30.0, 30.0], [-1, -1, -1, -1]]])
    tl = torch.tensor([[4, 7, -1]])
    boxes, labels = candidate_boxes(tb, tl, 20, 32, torch.Generator().manual_seed(0))
    assert boxes.shape == (1, 23, 4) and labels[0, :3].tolist() == [4, 7, -2]
    from torchvision.ops import box_iou

    best = box_iou(boxes[0, 3:], tb[0, :2]).amax(1)
    assert ((labels[0, 3:] >= 0) == (best >= 0.5)).all()


def test_candidate_boxes_ignore_empty_true_boxes():
    # canvas gives an object with no pixel above threshold the box -1 but keeps its label
    tb, tl = torch.tensor([[[-1.0, -1, -1, -1], [0, 0, 8, 8]]]), torch.tensor([[5, 2]])
    boxes, labels = candidate_boxes(tb, tl, 3, 32, torch.Generator().manual_seed(0))
    assert labels[0, :2].tolist() == [-2, 2] and not (labels[0] == 5).any()


def test_box_retrieval_equals_ap_of_hand_scored_boxes():
    enc = _encoder().eval()
    r = _canvas(8)
    images = torch.as_tensor(r["images"])
    boxes, labels = candidate_boxes(torch.as_tensor(r["boxes"]), torch.as_tensor(r["labels"]), 5, 32,
                                    torch.Generator().manual_seed(0))
    queries = torch.randn(3, WIDTH, generator=torch.Generator().manual_seed(1))
    per_class, mean = box_retrieval(enc, images, boxes, labels, queries, [0, 1, 2])
    with torch.no_grad():
        feats = enc(images, boxes)
    keep = labels >= -1
    s = F.normalize(feats[keep], dim=-1) @ F.normalize(queries, dim=-1).t()
    for c in range(3):
        assert per_class[c] == pytest.approx(box_retrieval_ap(s[:, c], labels[keep] == c), nan_ok=True)
    assert not math.isnan(mean)
    assert mean == pytest.approx(np.nanmean(list(per_class.values())))


def test_split_classes_disjoint_seeded():
    base, novel = split_classes(10, 4, seed=3)
    assert sorted(base + novel) == list(range(10)) and len(novel) == 4
    assert (base, novel) == split_classes(10, 4, seed=3)
    with pytest.raises(ConfigError, match="num_novel"):
        split_classes(3, 3)


def test_caption_tokens_and_canvas_batch():
    r = _canvas(3)
    batch, vocab = canvas_region_batch(r)
    assert batch["images"].shape == (3, 32, 32, 3) and batch["tokens"].shape[0] == 3
    assert {"square", "cross", "stripes"} & set(vocab)
    again, _ = caption_tokens(r["captions"], vocab)
    torch.testing.assert_close(again, batch["tokens"])


def test_bad_inputs_name_the_parameter():
    with pytest.raises(ConfigError, match="aggregate"):
        region_text_scores(torch.zeros(1, 1, 2), torch.zeros(1, 2), "sum")
    with pytest.raises(ConfigError, match="num_boxes"):
        sample_boxes(1, 32, 0, torch.Generator())
    with pytest.raises(ConfigError, match="scales"):
        sample_boxes(1, 32, 2, torch.Generator(), scales=(1.5,))
    with pytest.raises(DataError, match="scores"):
        info_nce(torch.zeros(2, 3), 0.1)
    with pytest.raises(DataError, match="tokens"):
        RegionTextObjective(_encoder(), CaptionEncoder(4, WIDTH))({"images": torch.zeros(1, 32, 32, 3)})
    with pytest.raises(DataError, match="is_match"):
        box_retrieval_ap([1.0, 2.0], [True])


@pytest.mark.parametrize("region", [True, False])
def test_trainer_fit_lowers_the_loss(region):
    from fmlab.engine import OptimConfig, ScheduleConfig, Trainer, TrainerConfig
    from fmlab.engine.data import TensorSource

    batch, vocab = canvas_region_batch(_canvas(8))
    obj = RegionTextObjective(_encoder(), CaptionEncoder(len(vocab) + 2, WIDTH), region=region, num_boxes=4,
                              tau=0.1)
    src = TensorSource(batch["images"], tokens=batch["tokens"])

    def loss() -> float:
        obj.eval()
        torch.manual_seed(123)  # same boxes before and after (the global RNG)
        with torch.no_grad():
            return obj(batch)[0].item()

    before = loss()
    Trainer(obj, src, TrainerConfig(max_steps=20, batch_size=8, log_every=10, progress=False,
                                    tensorboard=False, device="cpu"),
            OptimConfig(lr=3e-3), ScheduleConfig(name="constant")).fit()
    assert loss() < 0.7 * before
