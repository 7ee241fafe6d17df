"""M3I: InfoNCE against a loop, the single-stage sum of its terms, duplicates as positives, EMA."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from fmlab.errors import ConfigError
from fmlab.pretrain import M3I
from fmlab.pretrain.m3i import info_nce

from .conftest import TinyCNN


def test_info_nce_matches_a_loop_and_counts_shared_ids_as_positives():
    g = torch.Generator().manual_seed(0)
    p, t = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    ids = torch.tensor([0, 1, 0, 2, 1])
    pn, tn = F.normalize(p, dim=-1), F.normalize(t, dim=-1)
    total = 0.0
    for i in range(5):
        logits = [float(pn[i] @ tn[j]) / 0.5 for j in range(5)]
        lse = math.log(sum(math.exp(v) for v in logits))
        pos = [j for j in range(5) if ids[j] == ids[i]]
        total += -sum(logits[j] - lse for j in pos) / len(pos)
    assert float(info_nce(p, t, 0.5, ids)) == pytest.approx(total / 5, rel=1e-5)
    assert float(info_nce(p, t, 0.5)) == pytest.approx(float(info_nce(p, t, 0.5, torch.arange(5))), rel=1e-6)


def _batch():
    g = torch.Generator().manual_seed(1)
    return {"views": [torch.randn(6, 3, 8, 8, generator=g) for _ in range(2)],
            "labels": torch.arange(6) % 3}


def test_the_loss_is_the_weighted_sum_of_the_terms_and_zero_weights_drop_them():
    bank = torch.randn(3, 2, 5)
    torch.manual_seed(0)
    obj = M3I(TinyCNN(dim=8).eval(), 3, dim=4, view_weight=1.0, label_weight=0.5, text_weight=2.0,
              text_bank=bank)
    torch.manual_seed(3)
    loss, logs = obj.eval()(_batch())
    assert torch.allclose(loss, logs["loss_view"] + 0.5 * logs["loss_label"] + 2 * logs["loss_text"], atol=1e-6)
    only_label = M3I(TinyCNN(dim=8), 3, dim=4, view_weight=0, text_weight=0)
    _, logs = only_label(_batch())
    assert set(logs) == {"loss_label"} and not hasattr(only_label, "target_encoder")
    with pytest.raises(ConfigError, match="not all 0"):
        M3I(TinyCNN(dim=8), 3, view_weight=0, label_weight=0, text_weight=0)


def test_the_view_target_is_an_ema_of_the_online_network():
    obj = M3I(TinyCNN(dim=8), 3, dim=4, label_weight=0, text_weight=0, momentum=0.5)
    loss, _ = obj(_batch())
    loss.backward()
    with torch.no_grad():
        for p in obj.encoder.parameters():
            p.add_(1.0)
    before = [p.clone() for p in obj.target_encoder.parameters()]
    obj.on_after_optimizer_step(0, 10)
    for b, t, s in zip(before, obj.target_encoder.parameters(), obj.encoder.parameters()):
        assert torch.allclose(t, 0.5 * b + 0.5 * s)
    assert all(not p.requires_grad for p in obj.target_encoder.parameters())


def _pair_bank():
    g = torch.Generator().manual_seed(2)
    raw = torch.randint(0, 256, (4, 8, 8, 3), generator=g, dtype=torch.uint8)
    return raw, torch.randn(7, 5, generator=g), torch.tensor([0, 0, 1, 1, 2, 3, 3])


def test_the_pairs_term_is_info_nce_of_drawn_images_against_their_own_captions():
    raw, emb, rows = _pair_bank()
    torch.manual_seed(0)
    obj = M3I(TinyCNN(dim=8).eval(), 3, dim=4, view_weight=0, label_weight=0.5, text_weight=0,
              pairs_weight=2.0, pairs_batch=6, pair_bank=(raw, emb, rows)).eval()
    assert torch.allclose(obj._pair_images, obj.prepare(raw))
    batch = _batch()
    torch.manual_seed(5)
    loss, logs = obj(batch)
    assert torch.allclose(loss, 0.5 * logs["loss_label"] + 2.0 * logs["loss_pairs"], atol=1e-6)
    # the same draws by hand: captions, then flips, from the global RNG
    torch.manual_seed(5)
    caps = torch.randint(7, (6,))
    flip = torch.rand(6) < 0.5
    img = rows[caps]
    x = torch.stack([obj._pair_images[i].flip(-1) if f else obj._pair_images[i] for i, f in zip(img, flip)])
    with torch.no_grad():
        p = F.normalize(obj.predictor(obj.encoder(x)), dim=-1)
        t = F.normalize(obj.text_proj(emb[caps]), dim=-1)
    total = 0.0
    for i in range(6):
        logits = (p[i] @ t.T) / obj.temperature
        logp = logits - torch.logsumexp(logits, 0)
        pos = [j for j in range(6) if img[j] == img[i]]  # every caption of the same image
        total += -float(sum(logp[j] for j in pos)) / len(pos)
    assert float(logs["loss_pairs"]) == pytest.approx(total / 6, rel=1e-5)


def test_the_pairs_term_needs_an_image_text_source():
    with pytest.raises(ConfigError, match="objective.pairs"):
        M3I(TinyCNN(dim=8), 3, pairs_weight=1.0)
    with pytest.raises(ConfigError, match="not an image-text source"):
        M3I(TinyCNN(dim=8), 3, text_weight=0, pairs_weight=1.0, pairs="cifar10_demo")
    with pytest.raises(ConfigError, match="pairs_batch"):
        M3I(TinyCNN(dim=8), 3, pairs_weight=1.0, pairs_batch=0, pair_bank=_pair_bank())
