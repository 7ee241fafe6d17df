"""GRAM: ψ's formula and identity start, first-order MAML when ψ = identity, a meta-gradient for
ψ, seeded meta-tasks across two domains, the downstream estimator's use of φ and ψ."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fmlab.adapt import CoOpPhoto
from fmlab.adapt.coop import PromptLearner
from fmlab.adapt.gram import GRAM, GradientRegulator, GramMeta, load_gram_meta, save_gram_meta
from fmlab.adapt.gram_meta import GramMetaObjective, MetaTaskSource, pseudo_domains
from fmlab.errors import ConfigError

NAMES = ["a cat on a sofa", "a red car", "an aeroplane in the sky", "a dog", "a ship at sea",
         "a horse in a field"]


def test_regulator_formula_and_identity_start():
    torch.manual_seed(0)
    psi = GradientRegulator(8, hidden=5)
    g = 1e-3 * torch.randn(3, 8)
    assert torch.equal(psi(g), g)  # zero last layer: 2σ(0) = 1
    for p in psi.parameters():
        torch.nn.init.normal_(p)
    u = g / g.pow(2).mean().sqrt()
    W1, b1, W2, b2 = psi.h[0].weight, psi.h[0].bias, psi.h[2].weight, psi.h[2].bias
    want = g * 2 * torch.sigmoid(torch.relu(u @ W1.T + b1) @ W2.T + b2)
    torch.testing.assert_close(psi(g), want)
    # scale-free gate: the same direction pattern at another scale gets the same factors
    torch.testing.assert_close(psi.gate(1e3 * g), psi.gate(g))


def _task(dim: int, seed: int, n_way: int = 3, shots: int = 2):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n_way).repeat_interleave(shots)
    return torch.randn(n_way * shots, dim, generator=g), y


def _batch(dim: int):
    xa, ya = _task(dim, 1)
    xb, yb = _task(dim, 2)
    return {"support_x": xa[None], "support_y": ya[None], "support_rows": torch.tensor([[0, 2, 4]]),
            "query_x": xb[None], "query_y": yb[None], "query_rows": torch.tensor([[1, 3, 5]])}


def test_identity_regulator_is_first_order_maml(tiny_model):
    learner = PromptLearner(tiny_model, NAMES, ctx_init="a photo of a")
    for p in tiny_model.parameters():
        p.requires_grad_(False)
    obj = GramMetaObjective(learner, learner.ctx.detach(), scale=10.0, inner_lr=0.5, hidden=7)
    batch = _batch(16)
    loss, logs = obj(batch)
    loss.backward()

    # FO-MAML by hand: θ' = θ − α ∇L_A(θ); the meta-gradient of θ is ∇L_B at θ'
    def task_loss(ctx, x, y, rows):
        w = F.normalize(learner(ctx, rows), dim=-1)
        return F.cross_entropy(10.0 * F.normalize(x, dim=-1) @ w.T, y)

    theta = learner.ctx.detach().clone().requires_grad_(True)
    la = task_loss(theta, batch["support_x"][0], batch["support_y"][0], batch["support_rows"][0])
    (ga,) = torch.autograd.grad(la, theta)
    theta2 = (theta - 0.5 * ga).detach().requires_grad_(True)
    lb = task_loss(theta2, batch["query_x"][0], batch["query_y"][0], batch["query_rows"][0])
    (gb,) = torch.autograd.grad(lb, theta2)
    torch.testing.assert_close(loss, lb)
    torch.testing.assert_close(obj.ctx.grad, gb)
    torch.testing.assert_close(logs["inner_loss"], la.detach())
    # ψ gets a meta-gradient through θ' even though g itself carries no graph
    assert obj.regulator.h[2].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in tiny_model.parameters())
    assert "learner" not in dict(obj.named_modules())  # the model stays out of checkpoints


def test_pseudo_domains_and_seeded_tasks():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 8)) * 3
    img = centres.repeat(30, 0) + rng.normal(size=(120, 8))
    img /= np.linalg.norm(img, axis=1, keepdims=True)
    cls, dom, proto = pseudo_domains(img, img, n_domains=4, classes_per_domain=3, seed=0)
    assert len(dom) == 12 and np.bincount(dom).tolist() == [3, 3, 3, 3]
    assert (cls[proto] == np.arange(12)).all()
    src = MetaTaskSource(img, cls, dom, n_way=3, shots=2, n_tasks=50, seed=5)
    a, b = src.get_batch([7]), src.get_batch([7])
    for k in a:
        assert torch.equal(a[k], b[k])
    t = src.task(7)
    da, db = set(dom[t["support_rows"].numpy()]), set(dom[t["query_rows"].numpy()])
    assert len(da) == 1 and len(db) == 1 and da != db  # inner and outer on different domains
    assert t["support_x"].shape == (6, 8) and t["support_y"].tolist() == [0, 0, 1, 1, 2, 2]
    rows = t["support_rows"].numpy()
    for j in range(6):  # every support image belongs to its pseudo-class
        x = t["support_x"][j].numpy()
        hits = np.flatnonzero((np.abs(img - x).sum(1) < 1e-6))
        assert cls[hits[0]] == rows[t["support_y"][j]]


def _meta_like_photo(tiny_model, hidden=4):
    pl = PromptLearner(tiny_model, ["x"], ctx_init="a photo of a")
    return GramMeta(pl.ctx.detach().clone(), GradientRegulator(pl.ctx.shape[1], hidden),
                    {"steps": 0}, [], "mem")


def test_gram_with_identity_regulator_is_coop_from_phi(tiny_model):
    g = torch.Generator().manual_seed(0)
    y = np.repeat(np.arange(4), 6)
    X = (torch.randn(4, 16, generator=g)[y] + 0.3 * torch.randn(24, 16, generator=g)).numpy()
    names = NAMES[:4]
    meta = _meta_like_photo(tiny_model)
    gram = GRAM(tiny_model, names, meta, epochs=3, lr=0.5, warmup_epochs=0).fit(X, y)
    coop = CoOpPhoto(tiny_model, names, epochs=3, lr=0.5, warmup_epochs=0).fit(X, y)
    np.testing.assert_allclose(gram.decision_function(X), coop.decision_function(X), rtol=1e-5,
                               atol=1e-5)
    # a closed gate (2σ(−30) ≈ 0) freezes the context at φ (no weight decay: it acts without ψ)
    with torch.no_grad():
        meta.regulator.h[2].bias.fill_(-30.0)
    frozen = GRAM(tiny_model, names, meta, epochs=3, lr=0.5, warmup_epochs=0,
                  weight_decay=0.0).fit(X, y)
    torch.testing.assert_close(frozen.learner_.ctx.detach(), meta.ctx, atol=1e-9, rtol=0)
    off = GRAM(tiny_model, names, meta, regulate=False, epochs=3, lr=0.5, warmup_epochs=0).fit(X, y)
    np.testing.assert_allclose(off.decision_function(X), coop.decision_function(X), rtol=1e-5,
                               atol=1e-5)


def test_meta_folder_round_trip_and_errors(tiny_model, tmp_path):
    meta = _meta_like_photo(tiny_model, hidden=3)
    torch.nn.init.normal_(meta.regulator.h[2].weight)
    save_gram_meta(tmp_path / "m", meta.ctx, meta.regulator, {"steps": 5}, ["b", "a", "a"])
    back = load_gram_meta(tmp_path / "m")
    torch.testing.assert_close(back.ctx, meta.ctx)
    g = torch.randn(4, meta.ctx.shape[1])
    torch.testing.assert_close(back.regulator(g), meta.regulator(g))
    assert back.image_hashes == ["a", "b"] and back.info["n_ctx"] == 4
    with pytest.raises(ConfigError, match="no gram_meta.safetensors"):
        load_gram_meta(tmp_path)
    wrong = GramMeta(torch.zeros(4, 7), GradientRegulator(7), {}, [], "w")
    with pytest.raises(ConfigError, match="7-d"):
        GRAM(tiny_model, NAMES[:2], wrong, epochs=1).fit(np.random.randn(4, 16), [0, 1, 0, 1])
