"""The one-file contract (issue 27): a new adaptation method is one file, with no other edit.

A throwaway closed-form ridge classifier is written into a new module in a temporary folder,
imported, and run by ``fmlab adapt`` on the shipped demo data and weights; ``--help`` lists it
and its ``+zs`` ensemble, which the sweep builds from the class's declaration alone.
"""

from __future__ import annotations

import json
from importlib.resources import files

import numpy as np
import pytest

from fmlab.adapt import METHODS, run_sweep
from fmlab.cli.main import main

RIDGE = '''
"""A closed-form ridge classifier on one-hot targets."""
from numbers import Real

import torch
from sklearn.utils._param_validation import Interval

from fmlab.adapt import Estimator, register_estimator
from fmlab.adapt.base import views_as_samples


@register_estimator("ridge", zeroshot_ensemble=True)
class Ridge(Estimator):
    """Ridge regression on one-hot labels, W = (XᵀX + αI)⁻¹XᵀY."""

    views = "samples"
    _parameter_constraints = {"alpha": [Interval(Real, 0, None, closed="left")]}

    def __init__(self, alpha: float = 1.0):
        self.alpha = alpha

    def _fit(self, X, y, X_val, y_val):
        Xs, ys = views_as_samples(X.double(), y)
        Y = torch.nn.functional.one_hot(ys, len(self.classes_)).double()
        A = Xs.T @ Xs + self.alpha * torch.eye(Xs.shape[1], dtype=torch.float64)
        self.coef_ = torch.linalg.solve(A, Xs.T @ Y).T.numpy()
        self.hyperparameters_ = {"alpha": float(self.alpha)}

    def _scores(self, X):
        return (X.double() @ torch.as_tensor(self.coef_).T).to(X.dtype)
'''


@pytest.fixture
def ridge_module(tmp_path, throwaway_module):
    with throwaway_module(tmp_path / "plugins", "fmlab_test_ridge", RIDGE,
                          lambda: METHODS.remove("ridge")) as module:
        yield module


def test_a_new_method_is_one_file(ridge_module, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("FMLAB_DATA", raising=False)
    assert "ridge" in METHODS and "ridge+zs" in METHODS
    with pytest.raises(SystemExit):
        main(["adapt", "--help"])
    helptext = capsys.readouterr().out
    assert "ridge" in helptext and "ridge+zs" in helptext

    out = tmp_path / "run"
    w = str(files("fmlab") / "assets" / "resnet20_cifar10.safetensors")
    assert main(["adapt", "--backbone", "resnet20_cifar", "--weights", w, "--data", "cifar10_demo",
                 "--methods", "ridge,ncm", "--shots", "2", "--seeds", "1",
                 "--out", str(out), "--no-db"]) == 0
    recs = json.loads((out / "results.json").read_text())
    ridge = [r for r in recs if r["method"] == "ridge"]
    assert len(ridge) == 1 and ridge[0]["hyperparameters"] == {"alpha": 1.0}
    assert ridge[0]["accuracy"] > 0.3 and ridge[0]["n_views"] == 1  # chance is 0.1
    assert "| ridge |" in (out / "summary.md").read_text()


def test_the_plus_zs_variant_needs_no_code(ridge_module, mixture):
    X, y, means = mixture(6, 3, 8, seed=0)
    Xte, yte, _ = mixture(10, 3, 8, seed=1, means=means)
    recs = run_sweep(X, y, Xte, yte, ["ridge", "ridge+zs"], shots=(2,), seeds=(1,),
                     zeroshot_weights=means)
    by = {r["method"]: r for r in recs}
    assert set(by) == {"ridge", "ridge+zs"}
    assert "alpha" in by["ridge+zs"]["hyperparameters"] and by["ridge+zs"]["accuracy"] > 0.5
    assert np.isfinite(by["ridge"]["accuracy"])


def test_the_registry_is_clean_after_the_contract_tests():
    assert "ridge" not in METHODS and "ridge+zs" not in METHODS
