"""Dark Side augmentation's pieces: GeM, metric losses, mining, night degradation, retrieval mAP."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fmlab.data.night import NightSpec, PhotometricJitter, degrade_night
from fmlab.errors import ConfigError
from fmlab.metrics.retrieval import class_retrieval_map, mean_average_precision
from fmlab.retrieval import (ContrastiveLoss, GeM, TripletLoss, diverse_anchors, gem,
                             hard_negatives, pick_positives)


# ----------------------------------------------------------------------------- GeM

def test_gem_with_p1_is_average_pooling():
    x = torch.rand(3, 5, 4, 6) + 0.01
    assert torch.allclose(gem(x, 1.0), F.adaptive_avg_pool2d(x, 1).flatten(1), atol=1e-6)


def test_gem_tends_to_max_pooling_and_is_monotone_in_p():
    x = torch.rand(2, 4, 5, 5) + 0.01
    mx = F.adaptive_max_pool2d(x, 1).flatten(1)
    vals = [gem(x.double(), float(p)) for p in (1, 3, 10, 50, 300)]
    for lo, hi in zip(vals, vals[1:]):            # power mean grows with p
        assert (hi >= lo - 1e-9).all()
    assert torch.allclose(vals[-1], mx.double(), rtol=2e-2)
    assert (vals[-1] <= mx.double() + 1e-9).all()


def test_gem_p_is_learnable_and_init_3():
    pool = GeM()
    assert float(pool.p.detach()) == 3.0 and pool.p.requires_grad
    pool(torch.rand(2, 3, 4, 4)).sum().backward()
    assert pool.p.grad is not None and torch.isfinite(pool.p.grad)


# ----------------------------------------------------------------------------- losses

def _unit(*shape):
    return F.normalize(torch.randn(*shape), dim=-1)


def test_contrastive_loss_matches_its_formula():
    g = torch.Generator().manual_seed(0)
    a, p = F.normalize(torch.randn(6, 8, generator=g), dim=1), F.normalize(torch.randn(6, 8, generator=g), dim=1)
    n = F.normalize(torch.randn(6, 3, 8, generator=g), dim=-1)
    m = 1.2
    want = torch.stack([0.5 * (a[i] - p[i]).norm() ** 2 + sum(
        0.5 * max(0.0, m - float((a[i] - n[i, k]).norm())) ** 2 for k in range(3)) for i in range(6)])
    assert float(ContrastiveLoss(m)(a, p, n)) == pytest.approx(float(want.mean()), rel=1e-5)


def test_triplet_loss_is_zero_iff_margin_is_met_and_ignores_the_scale_of_far_negatives():
    a = torch.tensor([[1.0, 0.0]])
    p = F.normalize(torch.tensor([[1.0, 0.1]]), dim=1)
    far = torch.tensor([[[-1.0, 0.0]]])
    assert float(TripletLoss(0.5)(a, p, far)) == 0.0
    near = p.unsqueeze(1)                      # negative == positive: loss == margin
    assert float(TripletLoss(0.5)(a, p, near)) == pytest.approx(0.5)


def test_losses_refuse_mismatched_shapes():
    with pytest.raises(ValueError, match="must be"):
        ContrastiveLoss()(_unit(4, 8), _unit(3, 8), _unit(4, 2, 8))


# ----------------------------------------------------------------------------- mining

def test_diverse_anchors_cover_every_cluster_once():
    g = torch.Generator().manual_seed(0)
    centres = F.normalize(torch.randn(4, 16, generator=g), dim=1)
    sizes = [40, 5, 5, 5]                     # one dominant mode: random picks would mostly hit it
    emb = F.normalize(torch.cat([c + 0.02 * torch.randn(s, 16, generator=g)
                                 for c, s in zip(centres, sizes)]), dim=1)
    cluster = torch.cat([torch.full((s,), k) for k, s in enumerate(sizes)])
    for seed in range(5):
        picked = diverse_anchors(emb, 4, torch.Generator().manual_seed(seed), exclude=0.9)
        assert sorted(cluster[picked].tolist()) == [0, 1, 2, 3]


def test_diverse_anchors_with_exclude_0_are_distinct_and_seeded():
    emb = _unit(30, 8)
    a = diverse_anchors(emb, 10, torch.Generator().manual_seed(1), exclude=0.0)
    b = diverse_anchors(emb, 10, torch.Generator().manual_seed(1), exclude=0.0)
    assert torch.equal(a, b) and len(set(a.tolist())) == 10
    with pytest.raises(ValueError):
        diverse_anchors(emb, 31, torch.Generator())


def test_hard_negatives_are_the_most_similar_other_class_items():
    emb, labels = _unit(20, 8), torch.randint(0, 3, (20,), generator=torch.Generator().manual_seed(0))
    anchors = torch.tensor([0, 5, 7])
    neg = hard_negatives(emb, anchors, labels, 2)
    for row, i in zip(neg, anchors):
        other = [j for j in range(20) if labels[j] != labels[i]]
        best = sorted(other, key=lambda j: -float(emb[i] @ emb[j]))[:2]
        assert row.tolist() == best


def test_pick_positives_pairs_with_the_night_variant_or_a_same_class_image():
    labels = torch.tensor([0, 0, 1, 1]).repeat(2)
    sources = torch.arange(4).repeat(2)
    domains = torch.tensor([0] * 4 + [1] * 4)
    anchors = torch.tensor([0, 2, 5])
    pair = pick_positives(anchors, labels, sources, domains, torch.Generator().manual_seed(0), 1.0)
    assert pair.tolist() == [4, 6, 1]           # the other-domain variant of the same image
    cls = pick_positives(anchors, labels, sources, domains, torch.Generator().manual_seed(0), 0.0)
    for a, p in zip(anchors.tolist(), cls.tolist()):
        assert labels[p] == labels[a] and sources[p] != sources[a]


# ----------------------------------------------------------------------------- night degradation

def test_degrade_night_is_seeded_per_image_and_batch_independent():
    x = np.random.default_rng(0).integers(0, 256, (6, 8, 8, 3), dtype=np.uint8)
    ids = np.arange(10, 16)
    a = degrade_night(x, ids, seed=3)
    assert np.array_equal(a, degrade_night(x, ids, seed=3))
    assert np.array_equal(a[2:4], degrade_night(x[2:4], ids[2:4], seed=3))
    assert not np.array_equal(a, degrade_night(x, ids, seed=4))
    assert a.dtype == np.uint8 and a.shape == x.shape


def test_degrade_night_darkens_and_lowers_contrast():
    x = np.random.default_rng(1).integers(0, 256, (20, 16, 16, 3), dtype=np.uint8)
    spec = NightSpec(noise=(0.0, 0.0))
    y = degrade_night(x, np.arange(20), seed=0, spec=spec).astype(float)
    assert (y.mean(axis=(1, 2, 3)) < 0.5 * x.astype(float).mean(axis=(1, 2, 3))).all()
    assert (y.std(axis=(1, 2, 3)) < 0.6 * x.astype(float).std(axis=(1, 2, 3))).all()


def test_night_spec_names_a_bad_key():
    with pytest.raises(ConfigError, match="night.gain"):
        NightSpec(gain=(0.8, 0.2)).validate()


def test_photometric_jitter_is_seeded_and_stays_in_range():
    x = torch.rand(4, 3, 8, 8)
    j = PhotometricJitter()
    a, b = j(x, torch.Generator().manual_seed(0)), j(x, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.min() >= 0 and a.max() <= 1 and not torch.equal(a, x)


# ----------------------------------------------------------------------------- mAP

def test_map_hand_examples():
    s = torch.tensor([[0.9, 0.8, 0.7, 0.6]])
    assert mean_average_precision(s, torch.tensor([[True, False, True, False]])) == pytest.approx((1 + 2 / 3) / 2)
    assert mean_average_precision(s, torch.tensor([[False, False, False, True]])) == pytest.approx(0.25)
    q, db = torch.eye(2), torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    assert class_retrieval_map(q, torch.tensor([0, 1]), db, torch.tensor([0, 0, 1])) == 1.0


def test_class_map_matches_sklearn_and_ignores_chunking():
    sklearn = pytest.importorskip("sklearn.metrics")
    g = torch.Generator().manual_seed(0)
    q, db = _unit(7, 5), _unit(40, 5)
    ql, dl = torch.randint(0, 3, (7,), generator=g), torch.randint(0, 3, (40,), generator=g)
    want = np.mean([sklearn.average_precision_score((dl == ql[i]).numpy(), (db @ q[i]).numpy())
                    for i in range(7)])
    assert class_retrieval_map(q, ql, db, dl) == pytest.approx(want, abs=1e-6)
    assert class_retrieval_map(q, ql, db, dl, chunk=2) == pytest.approx(want, abs=1e-6)
