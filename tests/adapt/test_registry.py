"""Methods register at their definition; the sweep derives everything from the registry.

The reproducibility property of issue 27: a method's number depends on its own inputs only,
never on the other methods of the sweep (review §1.2: NCM gave 77.0 alone and 68.8 beside GDA
with --views 2, because views were extracted only for a hand-kept list and then given to all).
"""

from __future__ import annotations

import numpy as np
import pytest

from fmlab.adapt import METHODS, create_method, default_methods, run_sweep
from fmlab.adapt.registry import get_method, help_fields, uses_views
from fmlab.errors import ConfigError

# Cheap settings per method, so that the parametrised sweeps stay fast.
CHEAP = {"tipf": {"epochs": 3}, "tipf+zs": {"epochs": 3},
         "nmtune": {"min_steps": 10, "max_steps": 10, "lam_grid": (0.0, 1.0)}}


def test_default_sweep_and_ensembles_come_from_the_classes():
    assert default_methods() == ["ncm", "knn", "linear", "gda", "tip", "tipf"]
    zs = {n for n in METHODS.in_order() if n.endswith("+zs")}
    assert zs == {f"{b}+zs" for b in ("ncm", "knn", "linear", "gda", "tip", "tipf")}
    for name in zs:
        assert "zeroshot_weights" in get_method(name).requires
        assert get_method(name).cls is get_method(name[:-3]).cls
    assert get_method("coop").requires == ("model", "class_names")
    assert get_method("zeroshot").requires == ("zeroshot_weights",)


def test_views_and_help_follow_the_class_declarations():
    for name in METHODS.in_order():
        assert get_method(name).uses_views == (get_method(name).cls.views != "none"), name
    assert "zeroshot" not in uses_views(METHODS.in_order())
    assert {"ncm", "gda", "tip"} <= set(uses_views(METHODS.in_order()))
    fields = help_fields()
    assert fields["methods"].split(", ") == METHODS.in_order()
    assert fields["default_methods"] == ",".join(default_methods())


def test_plus_zs_variants_are_built_by_the_class():
    zs = np.eye(3)
    assert type(create_method("gda+zs", zeroshot_weights=zs)).__name__ == "ZeroShotEnsemble"
    tip = create_method("tip+zs", zeroshot_weights=zs, beta=2.0)  # Tip-Adapter's own fusion
    assert type(tip).__name__ == "TipAdapter" and tip.zeroshot_weights is zs and tip.beta == 2.0
    assert create_method("tipf", seed=7).seed == 7  # the sweep's seed reaches seeded classes
    with pytest.raises(ConfigError, match="zero-shot class weights"):
        create_method("ncm+zs")
    with pytest.raises(ConfigError, match="bad parameters for adapt method 'gda'"):
        create_method("gda", nope=1)


@pytest.fixture(scope="module")
def task():
    rng = np.random.default_rng(0)
    means = rng.normal(size=(4, 12))
    means *= 3.0 / np.linalg.norm(means, axis=1, keepdims=True)
    ytr = np.repeat(np.arange(4), 10)
    yte = np.repeat(np.arange(4), 8)
    Xtr = means[ytr] + 1.2 * rng.normal(size=(len(ytr), 12))
    Xte = means[yte] + 1.2 * rng.normal(size=(len(yte), 12))
    views = np.stack([Xtr + 0.8 * rng.normal(size=Xtr.shape) for _ in range(2)])
    zs = means + 1.5 * rng.normal(size=means.shape)
    return Xtr, ytr, Xte, yte, views, zs


def _sweep(task, methods):
    Xtr, ytr, Xte, yte, views, zs = task
    recs = run_sweep(Xtr, ytr, Xte, yte, methods, shots=(1, 3), seeds=(2,),
                     train_view_features=views, zeroshot_weights=zs,
                     method_params={m: CHEAP[m] for m in methods if m in CHEAP})
    return recs


@pytest.mark.parametrize("method", METHODS.in_order())
def test_a_method_scores_the_same_whatever_runs_beside_it(task, method):
    spec = get_method(method)
    if "model" in spec.requires:
        pytest.skip("needs an image-text model: tests/multimodal/test_coop_sklearn.py runs it")
    others = [m for m in METHODS.in_order() if m != method and "model" not in get_method(m).requires]
    alone = _sweep(task, [method])
    beside = [r for r in _sweep(task, others[:5] + [method] + others[5:]) if r["method"] == method]
    assert len(alone) == len(beside) == 2
    for a, b in zip(alone, beside):
        assert (a["accuracy"], a["hyperparameters"], a["split_sha256"]) == \
            (b["accuracy"], b["hyperparameters"], b["split_sha256"])
        # views reach a method exactly when its class uses them
        assert a["n_views"] == b["n_views"] == (2 if spec.uses_views else 1)
