"""CoOp as a registered method and a scikit-learn estimator (the part that needs a model).

tests/adapt/test_registry.py proves, for every other registered method, that a method's number
does not depend on what runs beside it; CoOp needs an image-text model, so its case is here.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import cross_val_score

from fmlab.adapt import ConES, ConESRandom, CoOp, CoOpPhoto, run_sweep

NAMES = ["cat", "dog", "car", "ship"]


@pytest.fixture
def task():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 16, generator=g)
    ytr = np.repeat(np.arange(4), 8)
    Xtr = (centres[ytr] + 0.3 * torch.randn(32, 16, generator=g)).numpy()
    yte = np.arange(12) % 4
    Xte = (centres[yte] + 0.3 * torch.randn(12, 16, generator=g)).numpy()
    views = np.stack([Xtr + 0.1 * torch.randn(32, 16, generator=g).numpy() for _ in range(2)])
    return Xtr, ytr, Xte, yte, views


@pytest.mark.parametrize("method", ["coop", "coop_photo", "cones", "cones_random", "gram", "gram_phi"])
def test_coop_scores_the_same_whatever_runs_beside_it(tiny_model, task, method):
    """Every method that needs the image-text model (tests/adapt/test_registry.py skips them)."""
    from fmlab.adapt.coop import PromptLearner
    from fmlab.adapt.gram import GradientRegulator, GramMeta

    Xtr, ytr, Xte, yte, views = task
    ctx = PromptLearner(tiny_model, ["x"], ctx_init="a photo of a").ctx.detach()
    meta = GramMeta(ctx, GradientRegulator(ctx.shape[1], 4), {}, [], "mem")

    def sweep(methods):
        recs = run_sweep(Xtr, ytr, Xte, yte, methods, shots=(2,), seeds=(1,), class_names=NAMES,
                         model=tiny_model, meta=meta, train_view_features=views,
                         zeroshot_weights=np.eye(4, 16),
                         method_params={method: {"epochs": 2, **({"n_ctx": 2} if method == "coop" else {})}})
        return [(r["accuracy"], r["hyperparameters"], r["n_views"]) for r in recs
                if r["method"] == method]

    alone = sweep([method])
    assert alone == sweep(["ncm", method, "gda+zs", "zeroshot"])
    assert alone[0][2] == 2  # these methods use views (as samples), so they get them


@pytest.mark.parametrize("cls, kw", [(CoOp, {"n_ctx": 2}), (CoOpPhoto, {}), (ConES, {}),
                                     (ConESRandom, {})])
def test_coop_clone_and_cross_val_score(tiny_model, task, cls, kw):
    Xtr, ytr, _, _, _ = task
    est = cls(tiny_model, NAMES, epochs=2, batch_size=16, **kw)
    twin = clone(est)
    assert twin.get_params(deep=False).keys() == est.get_params(deep=False).keys()
    def plain(e):  # clone deep-copies the model: compare every other parameter
        return {k: v for k, v in e.get_params(deep=False).items() if k != "model"}

    assert twin.class_names == NAMES and plain(twin) == plain(est)
    scores = cross_val_score(est, Xtr, ytr, cv=2)
    assert scores.shape == (2,) and np.all((scores >= 0) & (scores <= 1))
    fitted = cls(tiny_model, NAMES, epochs=2, **kw).fit(Xtr, ytr)
    assert fitted.score(Xtr, ytr) == pytest.approx(np.mean(fitted.predict(Xtr) == ytr))
