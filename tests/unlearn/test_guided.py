"""Guided stage 2: anchor / negative push formulas, latent split, stopping rule, isolation from
the evaluation (the chosen step cannot depend on the evaluation's z)."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from fmlab.errors import ConfigError
from fmlab.gan import create_discriminator, create_generator
from fmlab.gan.unlearn import StageConfig, train_stage
from fmlab.gan.unlearn.guide import GuideConfig, train_guide
from fmlab.gan.unlearn.guided import GuidedConfig, build_guided
from fmlab.gan.unlearn.latents import (
    LatentTerms,
    OnlineLatentTerms,
    combine,
    not_target_nll,
    split_latents,
    target_margin,
)
from fmlab.gan.unlearn.stopping import SelectStep, ValRecord, Validator, choose

SHAPE = (1, 8, 8)


def _g(seed: int = 0):
    torch.manual_seed(seed)
    return create_generator("mlp", z_dim=4, hidden=16, img_shape=SHAPE)


class ToyGuide(torch.nn.Module):
    """A guide whose verdict varies across samples: a sharp random linear map of the pixels
    (features = the flattened image), so every test sees several classes."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.head = torch.nn.Linear(64, 3)
        with torch.no_grad():
            self.head.weight.mul_(30.0)
            self.head.bias.zero_()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _guide(seed: int = 0) -> ToyGuide:
    return ToyGuide(seed).eval().requires_grad_(False)


def _sets(G, guide, target=0):
    return split_latents(G, guide, target, n=400, seed=1, confidence=0.0)


def _target_with_both(G, guide) -> int:
    """A class the random guide predicts for some but not all samples of G."""
    with torch.no_grad():
        pred = guide(G(G.sample_z(400, torch.Generator().manual_seed(1)))).argmax(1)
    counts = torch.bincount(pred, minlength=3)
    return int(torch.nonzero((counts > 0) & (counts < 400))[0])


def test_not_target_nll_matches_direct_formula():
    logits = torch.randn(6, 5)
    for t in range(5):
        direct = -torch.log(1 - logits.softmax(1)[:, t])
        torch.testing.assert_close(not_target_nll(logits, t), direct)
        p = logits.softmax(1)[:, t]
        expect = torch.where(p > 0.05, torch.log(p / 0.05), torch.zeros_like(p))
        torch.testing.assert_close(target_margin(logits, t, 0.05), expect)


def test_anchor_is_zero_with_zero_gradient_at_theta_g_and_positive_after_a_move():
    G, guide = _g(), _guide()
    sets = _sets(G, guide, _target_with_both(G, guide))
    terms = LatentTerms(sets, guide, 0, anchor_weight=3.0, negative_weight=0.0)
    term, logs = terms(G)
    assert float(term.detach()) == 0.0 and logs["anchor"] == 0.0
    term.backward()
    assert all(float(p.grad.abs().max()) == 0.0 for p in G.parameters())
    with torch.no_grad():
        next(G.parameters()).add_(0.3)
    assert float(terms(G)[0].detach()) > 0


def test_online_terms_zero_anchor_at_g0_and_direct_formula_after_a_move():
    G, guide = _g(), _guide()
    t = _target_with_both(G, guide)
    terms = OnlineLatentTerms(copy.deepcopy(G), guide, t, 2.0, 0.0, confidence=0.5,
                              batch_size=64, seed=5)
    assert float(terms(G)[0].detach()) == 0.0
    with torch.no_grad():
        next(G.parameters()).add_(0.2)
    terms.rng.manual_seed(5)
    got = float(terms(G)[0].detach())
    z = G.sample_z(64, torch.Generator().manual_seed(5))
    with torch.no_grad():
        x0 = terms.G0(z)
        p0 = guide(x0).softmax(1)
        keep = (p0.argmax(1) != t) & (p0.max(1).values >= 0.5)
        direct = 2.0 * float(((G(z) - x0) ** 2)[keep].mean())
    assert got == pytest.approx(direct, rel=1e-5) and got > 0


def test_negative_push_step_lowers_the_guides_target_probability():
    G, guide = _g(), _guide()
    t = _target_with_both(G, guide)
    sets = _sets(G, guide, t)
    terms = LatentTerms(sets, guide, t, anchor_weight=0.0, negative_weight=1.0, batch_size=10_000)
    before, _ = terms(G)
    opt = torch.optim.SGD(G.parameters(), lr=0.05)
    before.backward()
    opt.step()
    after, _ = terms(G)
    assert float(after.detach()) < float(before.detach())
    assert all(p.grad is None for p in guide.parameters())


def test_split_latents_matches_the_guides_verdicts():
    G, guide = _g(), _guide()
    t = _target_with_both(G, guide)
    sets = split_latents(G, guide, t, n=400, seed=1, confidence=0.5)
    with torch.no_grad():
        p_neg = guide(G(sets.z_neg)).softmax(1)
        p_pos = guide(sets.x_pos).softmax(1)
        torch.testing.assert_close(G(sets.z_pos), sets.x_pos)
    assert bool((p_neg.argmax(1) == t).all())
    assert bool((p_pos.argmax(1) != t).all()) and bool((p_pos.max(1).values >= 0.5).all())


def test_combine_sums_terms_and_merges_logs():
    a = lambda m: (torch.tensor(2.0), {"a": 2.0})  # noqa: E731
    b = lambda m: (torch.tensor(3.0), {"b": 3.0})  # noqa: E731
    total, logs = combine([a, None, b])(None)
    assert float(total) == 5.0 and logs == {"a": 2.0, "b": 3.0}
    assert combine([None, None]) is None


def test_choose_prefers_least_damage_among_removed_else_most_removed():
    recs = [ValRecord(s, sh, f) for s, sh, f in
            [(100, 0.10, 1.0), (200, 0.015, 5.0), (300, 0.012, 4.0), (400, 0.005, 9.0)]]
    assert choose(recs, 0.2, 0.9) == 2            # 200, 300, 400 removed ≥ 90 %; 300 least FID
    assert choose(recs, 0.2, 0.99) == 3           # none removed 99 %: the largest fall
    # incremental choice (what SelectStep keeps) = choice over all records
    best = None
    for k in range(1, len(recs) + 1):
        i = choose(recs[:k], 0.2, 0.9)
        assert i in (best, k - 1)
        best = i
    with pytest.raises(ConfigError):
        choose([], 0.2, 0.9)


def test_guided_config_refuses_terms_without_a_guide_and_eval_seed_reuse():
    off = GuidedConfig(guide_data=None)  # the paper's setup: nothing guided
    assert (off.anchor_weight, off.negative_weight, off.select_every) == (0.0, 0.0, 0)
    with pytest.raises(ConfigError, match="select_min_fall"):
        GuidedConfig(select_min_fall=1.5)
    with pytest.raises(ConfigError, match="push_margin"):
        GuidedConfig(push_margin=1.0)
    with pytest.raises(ConfigError, match="DiffAugment"):
        GuidedConfig(push_augment="flip")
    assert GuidedConfig(guide_data="none").guide_data is None
    assert not GuidedConfig(guide_data="none").uses_guide_terms
    with pytest.raises(ConfigError, match="DiffAugment"):
        OnlineLatentTerms(_g(), _guide(), 0, 1.0, 1.0, augment="bogus")
    G, guide = _g(), _guide()
    cfg = GuidedConfig(select_every=5, val_n=50, val_seed=7)
    with pytest.raises(ConfigError, match="evaluation"):
        build_guided(G, guide, np.zeros((10, 64)), 0, cfg, seed=0, eval_seed=7)


def test_train_guide_is_seeded_and_learns_a_separable_task():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(120) % 2
    x = torch.randn(120, 1, 8, 8, generator=g) * 0.1
    x[y == 1, :, :4] += 0.8  # class 1: bright top half
    cfg = GuideConfig(steps=60, batch_size=32, lr=5e-3, seed=3)
    a, b = train_guide(x, y.numpy(), cfg), train_guide(x, y.numpy(), cfg)
    for pa, pb in zip(a.state_dict().values(), b.state_dict().values()):
        torch.testing.assert_close(pa, pb)
    with torch.no_grad():
        assert float((a(x).argmax(1) == y).float().mean()) > 0.95


def test_select_step_keeps_the_chosen_steps_ema_weights():
    G, guide = _g(), _guide()
    D = create_discriminator("mlp", hidden=8, img_shape=SHAPE)
    t = _target_with_both(G, guide)
    ref = np.random.default_rng(0).normal(size=(200, 64))
    val = Validator(guide, t, ref, n=100, seed=9)
    share0, _ = val(G)
    sel = SelectStep(val, every=5, share0=share0, min_fall=2.0)  # unreachable: max fall wins
    data = torch.rand(64, *SHAPE) * 2 - 1
    Gu = copy.deepcopy(G)
    train_stage(Gu, D, data, StageConfig(steps=15, batch_size=16, lr_g=1e-2), None, 0, [sel])
    assert [r.step for r in sel.records] == [5, 10, 15]
    sel.load_best(Gu)
    share, fd = val(Gu)
    chosen = sel.records[sel.best_index]
    assert share == chosen.share and fd == pytest.approx(chosen.fid)


@pytest.mark.skipif(not os.environ.get("FMLAB_DATA"), reason="needs FMLAB_DATA (MNIST, MLP GAN)")
def test_chosen_step_and_weights_do_not_depend_on_the_evaluation_z(tmp_path: Path):
    """Two runs that differ only in the evaluation's z seed keep the same stopping step and the
    same weights: the selection never reads the evaluation samples."""
    from safetensors.torch import load_file

    from fmlab.experiments.unlearn import run_unlearn
    from fmlab.experiments.unlearn_config import load_unlearn_config

    w = Path(os.environ["FMLAB_DATA"]) / "weights" / "mnist_small"
    outs = []
    for eval_seed in (12345, 999):
        out = tmp_path / str(eval_seed)
        cfg = load_unlearn_config(None, [
            "adapt.steps=10", "unlearn.steps=20", "n_split=600", "n_eval=300",
            "guided.guide.steps=40", "guided.select_every=10", "guided.val_n=200",
            "guided.anchor_weight=10", "guided.negative_weight=1", "guided.n_latents=600",
            f"eval_seed={eval_seed}"],
            {"generator": str(w / "G--300.ckpt"), "discriminator": str(w / "D--300.ckpt"),
             "arch": "mlp", "target_class": 7, "out": str(out)})
        rep = run_unlearn(cfg)
        outs.append((rep, load_file(str(out / "generator.safetensors"))))
    (r1, w1), (r2, w2) = outs
    s1, s2 = r1["stage2"]["guide"]["selection"], r2["stage2"]["guide"]["selection"]
    assert s1 == s2 and s1["chosen_step"] in (10, 20)
    assert r1["metrics"]["before"]["target_share"] != r2["metrics"]["before"]["target_share"]
    for k in w1:
        assert torch.equal(w1[k], w2[k]), k
    json.dumps(s1)


def test_load_best_restores_buffers_too():
    """A generator with BatchNorm: the chosen step's running statistics come back with its weights."""
    from types import SimpleNamespace

    class _Val:
        def __call__(self, G):
            return 0.0, 1.0

    G = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    sel = SelectStep(_Val(), every=1, share0=1.0, min_fall=0.5)
    G.train()
    G(torch.randn(8, 3))                          # running stats move
    sel.on_after_step(SimpleNamespace(step=1, objective=SimpleNamespace(G=G, G_ema=None)))
    chosen = {k: v.clone() for k, v in G.state_dict().items()}
    G(torch.randn(8, 3) + 5.0)                    # a later step moves them again
    sel.load_best(G)
    for k, v in G.state_dict().items():
        assert torch.equal(v, chosen[k]), k
