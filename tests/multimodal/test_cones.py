"""ConES: the text tower runs only at initialisation, the text init is the zero-shot classifier,
the learnt embeddings live in the joint space, and it runs in the sweep next to CoOp."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.base import clone

from fmlab.adapt import ConES, ConESRandom, CoOp
from fmlab.adapt.coop import class_prompt_weights

NAMES = ["cat", "sports car", "aeroplane", "dog"]


def task(n_per_class: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    y = np.repeat(np.arange(4), n_per_class)
    centres = torch.randn(4, 16, generator=g)
    return (centres[y] + 0.3 * torch.randn(len(y), 16, generator=g)).numpy(), y


class TextCalls:
    """Counts every pass through the text tower (plain text and CoOp's embedding route)."""

    def __init__(self, model, monkeypatch):
        self.n = 0
        for name in ("forward", "forward_embeds"):
            orig = getattr(model.text, name)

            def counted(*a, _orig=orig, **k):
                self.n += 1
                return _orig(*a, **k)

            monkeypatch.setattr(model.text, name, counted)


@pytest.mark.parametrize("epochs", [1, 6])
def test_text_tower_runs_once_at_init_and_never_while_tuning(tiny_model, monkeypatch, epochs):
    X, y = task()
    calls = TextCalls(tiny_model, monkeypatch)
    est = ConES(tiny_model, NAMES, epochs=epochs, batch_size=8, warmup_epochs=0).fit(X, y)
    assert calls.n == 1  # the text init, whatever the number of steps
    assert est.hyperparameters_["steps"] == 4 * epochs
    est.predict(X)
    assert calls.n == 1
    ConESRandom(tiny_model, NAMES, epochs=epochs, batch_size=8).fit(X, y).predict(X)
    assert calls.n == 1  # the random init never touches the text tower
    # CoOp, by contrast, runs the text tower on every step
    CoOp(tiny_model, NAMES, n_ctx=2, epochs=epochs, batch_size=8).fit(X, y)
    assert calls.n >= 1 + 4 * epochs


def test_text_init_before_training_is_the_zero_shot_classifier(tiny_model):
    X, y = task()
    est = ConES(tiny_model, NAMES, lr=1e-12, epochs=1, warmup_epochs=0).fit(X, y)
    w = class_prompt_weights(tiny_model.eval(), NAMES)  # eval: no dropout, as inside fit
    np.testing.assert_allclose(est.text_weights_.numpy(), w, atol=1e-6)
    scale = est.scale_
    xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    np.testing.assert_allclose(est.decision_function(X), scale * xn @ w.T, rtol=1e-5, atol=1e-5)


def test_learns_the_task_and_keeps_the_model_frozen(tiny_model):
    X, y = task(seed=1)
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    est = ConES(tiny_model, NAMES, lr=0.5, epochs=30, batch_size=16, warmup_epochs=0).fit(X, y)
    assert np.mean(est.losses_[-4:]) < 0.7 * np.mean(est.losses_[:2])
    assert (est.predict(X) == y).mean() > 0.9
    for k, v in tiny_model.state_dict().items():
        torch.testing.assert_close(v, before[k])
    assert est.text_weights_.shape == (4, 16)
    torch.testing.assert_close(est.text_weights_.norm(dim=1), torch.ones(4))


def test_random_init_is_seeded_and_sklearn_compatible(tiny_model):
    X, y = task()
    a = ConESRandom(tiny_model, NAMES, epochs=2, seed=3).fit(X, y)
    b = clone(a).fit(X, y)
    np.testing.assert_array_equal(a.decision_function(X), b.decision_function(X))
    c = ConESRandom(tiny_model, NAMES, epochs=2, seed=4).fit(X, y)
    assert not np.allclose(a.decision_function(X), c.decision_function(X))
    assert a.get_params()["init"] == "random" and a.hyperparameters_["template"] is None
    with pytest.raises(ValueError, match="init"):
        ConES(tiny_model, NAMES, init="words").fit(X, y)


def test_cones_in_the_adapt_sweep_beside_coop(tiny_model, tmp_path):
    """One sweep, one split file: cones, cones_random and coop rows side by side."""
    from fmlab.adapt.protocol import run_sweep

    X, y = task(n_per_class=10)
    Xte, yte = task(n_per_class=5, seed=2)
    params = {m: {"model": tiny_model, "class_names": NAMES, "epochs": 2}
              for m in ("cones", "cones_random", "coop")}
    params["coop"]["n_ctx"] = 2
    recs = run_sweep(X, y, Xte, yte, ["cones", "cones_random", "coop"], shots=(2,), seeds=(1,),
                     class_names=NAMES, method_params=params)
    recs = recs if isinstance(recs, list) else recs["records"]
    assert sorted(r["method"] for r in recs) == ["cones", "cones_random", "coop"]
    assert all(r["fit_seconds"] > 0 for r in recs)
    json.dumps([r["hyperparameters"] for r in recs])  # JSON-able for the results store
