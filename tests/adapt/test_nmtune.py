"""NMTune: each loss term against its formula computed by hand, the reductions (λ = 0 is plain
cross-entropy; s = 0 is a linear probe on f), λ chosen on validation only, and the sweep."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.base import clone

from fmlab.adapt import METHODS, NMTune, run_sweep
from fmlab.adapt.nmtune import (
    NMTuneNet,
    nmtune_cov,
    nmtune_mse,
    nmtune_svd,
    nmtune_terms,
    nmtune_total,
)
from fmlab.errors import ConfigError


def _rand(n=12, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64)


def test_mse_term_by_hand():
    z, f = _rand(seed=1), _rand(seed=2)
    expect = 0.0
    for i in range(z.shape[0]):
        zi = z[i] / math.sqrt(sum(float(v) ** 2 for v in z[i]))
        fi = f[i] / math.sqrt(sum(float(v) ** 2 for v in f[i]))
        expect += sum(float(a - b) ** 2 for a, b in zip(zi, fi))
    expect /= z.numel()  # the mean over the B·D elements
    assert float(nmtune_mse(z, f)) == pytest.approx(expect, rel=1e-10)
    z.requires_grad_(True)
    f.requires_grad_(True)
    nmtune_mse(z, f).backward()
    assert float(z.grad.abs().sum()) > 0
    assert f.grad is None  # f is a stop-gradient target


def test_cov_term_by_hand():
    z = _rand(n=9, d=5, seed=3)
    n, d = z.shape
    mean = [sum(float(z[i, j]) for i in range(n)) / n for j in range(d)]
    total = 0.0
    for a in range(d):
        for b in range(d):
            if a != b:
                c = sum((float(z[i, a]) - mean[a]) * (float(z[i, b]) - mean[b])
                        for i in range(n)) / (n - 1)
                total += c * c
    assert float(nmtune_cov(z)) == pytest.approx(total / d, rel=1e-10)
    # decorrelated (orthogonal, centred) columns have no off-diagonal covariance
    q, _ = torch.linalg.qr(torch.randn(8, 4, dtype=torch.float64))
    q = torch.cat([q, -q])
    assert float(nmtune_cov(q)) == pytest.approx(0.0, abs=1e-20)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_svd_term_matches_numpy(k):
    z = _rand(n=20, d=8, seed=4) + 2.0  # uncentred: the mean direction dominates
    s = np.linalg.svd(z.numpy(), compute_uv=False)
    expect = float(np.mean(s[:k] / s.sum()))
    assert float(nmtune_svd(z, k)) == pytest.approx(expect, rel=1e-10)
    zr = z.clone().requires_grad_(True)
    nmtune_svd(zr, k).backward()
    assert float(zr.grad.abs().sum()) > 0  # gradients flow through the SVD


def test_total_is_ce_at_lam_zero_and_the_formula_otherwise():
    z, f = _rand(seed=5), _rand(seed=6)
    logits, y = _rand(d=4, seed=7), torch.arange(12) % 4
    t = nmtune_terms(z, f, logits, y, k=5)
    assert float(t["ce"]) == pytest.approx(float(F.cross_entropy(logits, y)))
    assert torch.equal(nmtune_total(t, 0.0), t["ce"])
    lam, w = 0.5, (1.0, 0.04, 0.001)
    expect = t["ce"] + lam * (w[0] * t["mse"] + w[1] * t["cov"] - w[2] * t["svd"])
    assert float(nmtune_total(t, lam, *w)) == pytest.approx(float(expect), rel=1e-12)
    t2 = nmtune_terms(z, f, logits, y, mse_pairs=(z[6:], f[:6]))  # cross-view pairs
    assert float(t2["mse"]) == pytest.approx(float(nmtune_mse(z[6:], f[:6])))


def test_zero_scale_is_a_linear_probe_on_f():
    torch.manual_seed(0)
    net = NMTuneNet(6, 3)
    f = torch.randn(10, 6)
    assert torch.allclose(net.features(f), net.mlp(f) + f)  # s initialised to 1.0
    with torch.no_grad():
        net.scale.zero_()
    z, logits = net(f)
    assert torch.equal(z, f)
    assert torch.allclose(logits, f @ net.head.weight.T + net.head.bias)
    # and the head's gradient is the linear probe's cross-entropy gradient on f
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    F.cross_entropy(logits, y).backward()
    W = net.head.weight.detach().clone().requires_grad_(True)
    b = net.head.bias.detach().clone().requires_grad_(True)
    F.cross_entropy(f @ W.T + b, y).backward()
    assert torch.allclose(net.head.weight.grad, W.grad) and torch.allclose(net.head.bias.grad, b.grad)


@pytest.fixture
def data(mixture):
    X, y, means = mixture(8, 3, 10, seed=0, spread=0.8)
    Xv, yv, _ = mixture(4, 3, 10, seed=1, spread=0.8, means=means)
    Xt, yt, _ = mixture(30, 3, 10, seed=2, spread=0.8, means=means)
    return X, y, Xv, yv, Xt, yt


def test_lam_is_chosen_on_validation(data):
    X, y, Xv, yv, Xt, yt = data
    est = NMTune(lam_grid=(0.0, 1.0), max_steps=60, lr=1e-2).fit(X, y, Xv, yv)
    hp = est.hyperparameters_
    assert hp["lam"] in (0.0, 1.0) and set(hp["val_accuracy_by_lam"]) == {"0.0", "1.0"}
    assert est.score(Xt, yt) > 0.8
    # the choice is a function of (train, val) only: refitting gives the same predictions
    again = clone(est).fit(X, y, Xv, yv)
    np.testing.assert_array_equal(again.predict(Xt), est.predict(Xt))
    with pytest.raises(ConfigError, match="validation"):
        NMTune().fit(X, y)
    with pytest.raises(ConfigError, match="lam_grid"):
        NMTune(lam_grid=(-1.0,)).fit(X, y, Xv, yv)


def test_clone_and_params():
    est = NMTune(lam=0.5, epochs=3)
    assert clone(est).get_params() == est.get_params()
    assert est.set_params(w_cov=0.1) is est and est.get_params()["w_cov"] == 0.1
    assert METHODS.get("nmtune").cls is NMTune and NMTune.views == "samples"


def test_views_train_cross_view(data):
    X, y, Xv, yv, Xt, yt = data
    rng = np.random.default_rng(3)
    V = np.stack([X + 0.1 * rng.normal(size=X.shape) for _ in range(2)])
    est = NMTune(lam=1.0, max_steps=60, lr=1e-2).fit(V, y)
    assert est.hyperparameters_["n_views"] == 2 and est.score(Xt, yt) > 0.8
    # two identical views: the cross-view MSE is the same-sample MSE and the batch is the same
    # rows twice (BatchNorm, CE and σ̂ unchanged), so the first loss equals the no-view one;
    # w_cov = 0 because C's 1/(n-1) changes when the rows are doubled
    same = NMTune(lam=1.0, w_cov=0.0, max_steps=5, seed=1).fit(np.stack([X, X]), y)
    single = NMTune(lam=1.0, w_cov=0.0, max_steps=5, seed=1).fit(X, y)
    assert same.losses_[0] == pytest.approx(single.losses_[0], rel=1e-5)


def test_runs_in_the_sweep_next_to_linear(data):
    X, y, Xv, yv, Xt, yt = data
    Xtr = np.concatenate([X, Xv])
    ytr = np.concatenate([y, yv])
    recs = run_sweep(Xtr, ytr, Xt, yt, ["linear", "nmtune"], shots=(4,), seeds=(1,),
                     method_params={"nmtune": {"max_steps": 60, "lr": 1e-2}})
    acc = {r["method"]: r["accuracy"] for r in recs}
    assert set(acc) == {"linear", "nmtune"} and min(acc.values()) > 0.6
    nm = next(r for r in recs if r["method"] == "nmtune")
    assert nm["hyperparameters"]["lam"] in (0.0, 0.1, 1.0, 10.0)


def test_fmlab_adapt_runs_nmtune(tmp_path, capsys):
    import json

    from fmlab.cli.main import main
    from tests.conftest import make_npz

    npz = make_npz(tmp_path / "a.npz", n_train=40, n_test=20, n_classes=4, hw=(16, 16))
    out = tmp_path / "run"
    assert main(["adapt", "--backbone", "resnet20_cifar", "--data", f"npz:{npz}", "--methods",
                 "linear,nmtune", "--shots", "4", "--seeds", "1", "--out", str(out),
                 "--no-db"]) == 0
    recs = json.loads((out / "results.json").read_text())
    assert {r["method"] for r in recs} == {"linear", "nmtune"}
    assert "| nmtune |" in (out / "summary.md").read_text()
