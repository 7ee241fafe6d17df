"""Composite objectives: the weighted sum, uncertainty weighting's gradient, schedules, shared views."""

from __future__ import annotations

import pytest
import torch

from fmlab.errors import ConfigError, DataError
from fmlab.pretrain import SimCLR, Supervised
from fmlab.pretrain.composite import CompositeObjective, CompositeTransform, Term, term_weight

from .conftest import TinyCNN


def _terms(enc: TinyCNN) -> list[Term]:
    torch.manual_seed(0)
    return [Term("simclr", SimCLR(enc, proj_dim=8, proj_hidden_dim=16), 1.0),
            Term("sup", Supervised(enc, num_classes=3), 0.25)]


def _batches(seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    views = [torch.randn(6, 3, 8, 8, generator=g) for _ in range(2)]
    sup = {"images": torch.randn(6, 3, 8, 8, generator=g), "labels": torch.arange(6) % 3}
    return [{"views": views}, sup]


def test_the_loss_is_the_weighted_sum_of_the_separate_terms():
    enc = TinyCNN(dim=8).eval()  # eval: BatchNorm statistics do not depend on call order
    terms = _terms(enc)
    obj = CompositeObjective(enc, terms)
    parts = _batches()
    loss, logs = obj({"terms": parts})
    alone = [t.objective(p)[0] for t, p in zip(terms, parts)]
    assert torch.allclose(loss, alone[0] + 0.25 * alone[1], atol=1e-6)
    assert torch.allclose(logs["simclr_loss"], alone[0]) and torch.allclose(logs["sup_loss"], alone[1])
    assert logs["sup_weight"] == 0.25 and "sup/acc" in logs


def test_uncertainty_weighting_gradient_matches_its_formula():
    """L = Σ ½[exp(−s_i) w_i L_i + s_i]  ⇒  ∂L/∂s_i = ½(1 − exp(−s_i) w_i L_i)."""
    enc = TinyCNN(dim=8).eval()
    obj = CompositeObjective(enc, _terms(enc), weighting="uncertainty")
    with torch.no_grad():
        obj.log_vars.copy_(torch.tensor([0.3, -0.7]))
    loss, logs = obj({"terms": _batches()})
    loss.backward()
    s = obj.log_vars.detach()
    L = torch.stack([logs["simclr_loss"], logs["sup_loss"]])
    w = torch.tensor([1.0, 0.25])
    assert torch.allclose(obj.log_vars.grad, 0.5 * (1 - torch.exp(-s) * w * L), atol=1e-6)
    assert torch.allclose(loss, 0.5 * (torch.exp(-s) * w * L + s).sum(), atol=1e-6)


def test_linear_ramp_follows_the_steps_and_resumes_from_the_state_dict():
    assert [term_weight(1.0, "linear", 4, s) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    enc = TinyCNN(dim=8)
    a = CompositeObjective(enc, [Term("x", Supervised(enc, num_classes=3), 2.0, "linear", 4)])
    for step in range(2):
        a.on_after_optimizer_step(step, 10)
    assert a.weights() == [1.5]
    b = CompositeObjective(enc, [Term("x", Supervised(enc, num_classes=3), 2.0, "linear", 4)])
    b.load_state_dict(a.state_dict())
    assert b.weights() == [1.5]  # the step count travels with checkpoints


def test_terms_with_the_same_views_share_one_encoder_pass():
    enc = TinyCNN(dim=8).eval()
    calls = []
    enc.net.register_forward_hook(lambda m, i, o: calls.append(i[0].shape))  # real computation
    torch.manual_seed(0)
    terms = [Term("a", SimCLR(enc, proj_dim=8, proj_hidden_dim=16)),
             Term("b", SimCLR(enc, proj_dim=8, proj_hidden_dim=16, supervised=True), 0.5)]
    obj = CompositeObjective(enc, terms)
    views = _batches()[0]
    shared = {**views, "labels": torch.arange(6) % 3}
    loss, _ = obj({"terms": [shared, shared]})
    assert len(calls) == 1  # SimCLR encodes its two views in one batch, once for both terms
    calls.clear()
    separate = terms[0].objective(shared)[0] + 0.5 * terms[1].objective(shared)[0]
    assert len(calls) == 2 and torch.allclose(loss, separate, atol=1e-6)
    loss.backward()  # the shared graph back-propagates once through the encoder


def test_composite_transform_gives_grouped_terms_the_same_batch():
    seen = []

    def tf(batch, gen):
        seen.append(1)
        return {"x": torch.rand(2, generator=gen)}

    out = CompositeTransform([tf, tf], [0, 1, 0])({"images": None}, torch.Generator().manual_seed(0))
    assert len(seen) == 2 and out["terms"][0] is out["terms"][2] and out["terms"][1] is not out["terms"][0]


def test_bad_construction_and_batches_are_refused():
    enc = TinyCNN(dim=8)
    with pytest.raises(ConfigError, match="at least one term"):
        CompositeObjective(enc, [])
    with pytest.raises(ConfigError, match="weighting"):
        CompositeObjective(enc, _terms(enc), weighting="learned")
    with pytest.raises(DataError, match="must hold 2 batches"):
        CompositeObjective(enc, _terms(enc))({"terms": [{}]})
