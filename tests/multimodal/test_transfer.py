"""Base-to-new and cross-dataset evaluation: for_classes reproduces a fit on the new names,
the records' numbers are what they claim, and per-class methods are refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fmlab.adapt import CoOp
from fmlab.adapt.base import InputError
from fmlab.adapt.coop import PromptLearner
from fmlab.adapt.splits import make_split
from fmlab.adapt.transfer import base_new_split, harmonic_mean, run_base_to_new, run_cross_dataset
from fmlab.errors import ConfigError

NAMES = ["cat", "dog", "car", "ship", "bird"]


def _data(n_per: int, seed: int, n_classes: int = 5, dim: int = 16):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(n_classes, dim, generator=torch.Generator().manual_seed(0))
    y = np.repeat(np.arange(n_classes), n_per)
    return (centres[y] + 0.3 * torch.randn(len(y), dim, generator=g)).numpy(), y


def test_base_new_split_and_harmonic_mean():
    b, n = base_new_split(10)
    assert b.tolist() == [0, 1, 2, 3, 4] and n.tolist() == [5, 6, 7, 8, 9]
    assert harmonic_mean(0.5, 0.5) == 0.5 and harmonic_mean(0.0, 0.9) == 0.0


def test_for_classes_puts_the_learnt_context_before_the_new_names(tiny_model):
    X, y = _data(4, 1, n_classes=3)
    est = CoOp(tiny_model, NAMES[:3], n_ctx=4, epochs=2, lr=0.5, warmup_epochs=0).fit(X, y)
    moved = est.for_classes(NAMES[3:])
    # the same context, run through the text tower with the new class names
    pl = PromptLearner(tiny_model.eval(), NAMES[3:], n_ctx=4)
    with torch.no_grad():
        pl.ctx.copy_(est.learner_.ctx)
        want = torch.nn.functional.normalize(pl().float(), dim=-1)
    torch.testing.assert_close(moved.text_weights_, want)
    assert moved.classes_.tolist() == [0, 1] and moved.decision_function(X).shape == (len(X), 2)
    assert est.text_weights_.shape[0] == 3  # the original is untouched
    with pytest.raises(InputError, match="per-class"):
        CoOp(tiny_model, NAMES[:3], n_ctx=2, csc=True, epochs=1, warmup_epochs=0).fit(X, y).for_classes(["x"])


def test_base_to_new_records(tiny_model):
    Xtr, ytr = _data(6, 1)
    Xte, yte = _data(5, 2)
    zs = torch.nn.functional.normalize(torch.randn(5, 16, generator=torch.Generator().manual_seed(3)), dim=-1)
    recs = run_base_to_new(Xtr, ytr, Xte, yte, ["zeroshot", "coop"], (2,), (1,), class_names=NAMES,
                           zeroshot_weights=zs, model=tiny_model,
                           method_params={"coop": {"n_ctx": 2, "epochs": 2, "warmup_epochs": 0}})
    by = {r["method"]: r for r in recs}
    assert by["coop"]["base_classes"] == NAMES[:3] and by["coop"]["new_classes"] == NAMES[3:]
    assert by["coop"]["n_train"] == 6 and by["coop"]["n_test"] == 15 and by["coop"]["n_test_new"] == 10
    # zero-shot's numbers by hand: argmax of cosine among the base / the new weights
    s = torch.nn.functional.normalize(torch.as_tensor(Xte), dim=-1) @ zs.T
    base, new = yte < 3, yte >= 3
    want_b = float((s[base][:, :3].argmax(1).numpy() == yte[base]).mean())
    want_n = float((s[new][:, 3:].argmax(1).numpy() == yte[new] - 3).mean())
    assert by["zeroshot"]["base_accuracy"] == pytest.approx(want_b)
    assert by["zeroshot"]["new_accuracy"] == pytest.approx(want_n)
    assert by["zeroshot"]["harmonic_mean"] == pytest.approx(harmonic_mean(want_b, want_n))
    with pytest.raises(ConfigError, match="linear"):
        run_base_to_new(Xtr, ytr, Xte, yte, ["linear"], (2,), (1,), class_names=NAMES)


def test_cross_dataset_scores_the_fitted_context_on_the_target(tiny_model):
    Xtr, ytr = _data(4, 1, n_classes=3)
    Xte, yte = _data(3, 2, n_classes=3)
    Xt, yt = _data(3, 5, n_classes=2)
    params = {"coop": {"n_ctx": 2, "epochs": 2, "warmup_epochs": 0}}
    seen = []
    recs = run_cross_dataset(Xtr, ytr, Xte, yte, Xt, yt, ["coop"], (2,), (1,), class_names=NAMES[:3],
                             target_class_names=NAMES[3:], model=tiny_model, method_params=params,
                             on_fit=lambda m, k, s, est: seen.append((m, k, s)))
    assert seen == [("coop", 2, 1)]  # the caller's own hook still runs
    # the same fit by hand (split seed 1 = estimator seed 1), then the context on the target names
    est = CoOp(tiny_model, NAMES[:3], n_ctx=2, epochs=2, warmup_epochs=0, seed=1)
    sp = make_split(ytr, 2, 1, class_names=NAMES[:3], n_classes=3)
    est.fit(Xtr[sp.train], ytr[sp.train], Xtr[sp.val], ytr[sp.val])
    want = float((est.for_classes(NAMES[3:]).predict(Xt) == yt).mean())
    assert recs[0]["target_accuracy"] == pytest.approx(want) and recs[0]["n_test_target"] == len(yt)


def test_base_to_new_passes_the_base_images_views(tiny_model):
    Xtr, ytr = _data(6, 1)
    Xte, yte = _data(5, 2)
    views = np.stack([Xtr + 0.05 * np.random.default_rng(v).normal(size=Xtr.shape) for v in range(2)])
    recs = run_base_to_new(Xtr, ytr, Xte, yte, ["coop"], (2,), (1,), class_names=NAMES, model=tiny_model,
                           train_view_features=views,
                           method_params={"coop": {"n_ctx": 2, "epochs": 1, "warmup_epochs": 0}})
    assert recs[0]["n_views"] == 2 and recs[0]["n_train"] == 6
