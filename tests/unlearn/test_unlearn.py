"""Adapt-then-Unlearn: formulas against direct implementations, saved weights, CLI, end to end."""

from __future__ import annotations

import argparse
import copy
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from fmlab.gan import create_discriminator, create_generator
from fmlab.gan.unlearn import (
    Repulsion,
    ewc_penalty,
    extrapolate,
    fisher_diagonal,
    param_distance,
    param_snapshot,
    repulsion,
)


def _nets(seed: int = 0):
    torch.manual_seed(seed)
    G = create_generator("mlp", z_dim=4, hidden=8, img_shape=(1, 3, 3))
    D = create_discriminator("mlp", hidden=8, img_shape=(1, 3, 3))
    return G, D


def test_fisher_matches_per_sample_loop():
    G, D = _nets()
    F = fisher_diagonal(G, D, n=5, generator=torch.Generator().manual_seed(3))
    z = torch.randn(5, 4, generator=torch.Generator().manual_seed(3))
    params = list(G.parameters())
    expect = [torch.zeros_like(p) for p in params]
    for i in range(5):  # independent: flatten the images by hand through D's layers
        x = G(z[i:i + 1]).reshape(1, -1)
        h = D._modules["3"](D._modules["2"](D._modules["1"](D._modules["0"](x))))
        s = D._modules["4"](h).sum()
        for e, g in zip(expect, torch.autograd.grad(s, params)):
            e += g ** 2 / 5
    for (name, f), e in zip(F.items(), expect):
        torch.testing.assert_close(f, e, msg=name)
    assert all(p.grad is None for p in D.parameters())


def test_ewc_penalty_formula_and_zero_at_anchor():
    G, _ = _nets()
    anchor = param_snapshot(G)
    fisher = {k: torch.rand_like(v) for k, v in anchor.items()}
    assert float(ewc_penalty(G, anchor, fisher, 7.0).detach()) == 0.0
    with torch.no_grad():
        for p in G.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    cur = dict(G.named_parameters())
    direct = sum(float((fisher[k] * (cur[k] - anchor[k]) ** 2).sum()) for k in anchor) * 7.0 / 2
    assert math.isclose(float(ewc_penalty(G, anchor, fisher, 7.0).detach()), direct, rel_tol=1e-5)


def test_param_distance_is_mean_of_per_tensor_mse_over_anchors():
    a = {"w": torch.randn(3, 4), "b": torch.randn(5)}
    anchors = [{k: torch.randn_like(v) for k, v in a.items()} for _ in range(2)]
    direct = np.mean([np.mean([((a[k] - an[k]) ** 2).mean().item() for k in a])
                      for an in anchors])
    assert math.isclose(float(param_distance(a, anchors)), direct, rel_tol=1e-6)


@pytest.mark.parametrize("kind,formula", [("nl2", lambda d, g: -g * d),
                                          ("el2", lambda d, g: math.exp(-g * d)),
                                          ("il2", lambda d, g: g / d)])
def test_repulsion_formula_and_gradient_pushes_away(kind, formula):
    d = torch.tensor(0.7)
    assert math.isclose(float(repulsion(d, kind, 1.3)), formula(0.7, 1.3), rel_tol=1e-6)
    G, _ = _nets()
    theta_n = {k: v + 0.01 * torch.randn_like(v) for k, v in param_snapshot(G).items()}
    rep = Repulsion(G, [theta_n], kind, gamma=2.0)
    r, logs = rep(G)
    assert math.isclose(logs["d_norm"], 1.0, rel_tol=1e-5)  # normalised by d0 at the start
    r.backward()
    for k, p in G.named_parameters():
        diff = p.detach() - theta_n[k]
        step = -p.grad
        nz = diff.abs() > 1e-8
        assert torch.all(torch.sign(step[nz]) == torch.sign(diff[nz])), k
    d_before = float(param_distance(dict(G.named_parameters()), [theta_n]))
    with torch.no_grad():
        for p in G.parameters():
            p.add_(-1e-3 * p.grad)
    assert float(param_distance(dict(G.named_parameters()), [theta_n])) > d_before


def test_repulsion_rejects_identical_models_and_unknown_kind():
    from fmlab.errors import ConfigError, FmlabError

    G, _ = _nets()
    with pytest.raises(ConfigError, match="d0 = 0"):
        Repulsion(G, [param_snapshot(G)], "nl2")
    with pytest.raises(FmlabError, match="l3"):
        Repulsion(G, [param_snapshot(G)], "l3")


def test_extrapolation_formula():
    g = {"w": torch.randn(4, 3), "n": torch.tensor(5)}
    n = {"w": torch.randn(4, 3), "n": torch.tensor(2)}
    for gamma in (-1.0, 0.0, 0.5, 1.0, 2.0):
        out = extrapolate(n, g, gamma)
        torch.testing.assert_close(out["w"], n["w"] + gamma * (g["w"] - n["w"]))
        assert int(out["n"]) == 5
    torch.testing.assert_close(extrapolate(n, g, 1.0)["w"], g["w"])


def test_train_stage_is_deterministic_and_moves_g():
    from fmlab.gan.unlearn import StageConfig, train_stage

    G, D = _nets()
    data = torch.rand(20, 1, 3, 3) * 2 - 1
    runs = []
    for _ in range(2):
        g, d = copy.deepcopy(G), copy.deepcopy(D)
        train_stage(g, d, data, StageConfig(steps=3, batch_size=4, log_every=1), seed=1)
        runs.append(param_snapshot(g))
    for k in runs[0]:
        torch.testing.assert_close(runs[0][k], runs[1][k])
    assert any(not torch.equal(runs[0][k], v) for k, v in param_snapshot(G).items())


# ------------------------------------------------------------------- real checkpoint / CLI

def _data_root() -> Path:
    root = os.environ.get("FMLAB_DATA")
    if not root:
        pytest.skip("FMLAB_DATA is not set: needs the MNIST MLP-GAN checkpoints and LeNet-5")
    w = Path(root) / "weights" / "mnist_small"
    if not (w / "G--300.ckpt").is_file():
        pytest.skip(f"{w}/G--300.ckpt not found")
    return w


def _parser():
    from fmlab.cli import gan_unlearn

    p = argparse.ArgumentParser(prog="fmlab")
    sub = p.add_subparsers(dest="command")
    gan = sub.add_parser("gan").add_subparsers(dest="gan_command")
    gan_unlearn.add_parser(gan)
    return p


def test_end_to_end_tiny_run_writes_everything(tmp_path):
    from safetensors.torch import load_file

    from fmlab.experiments.unlearn import UnlearnConfig, run_unlearn
    from fmlab.gan.nets.mlp import MLPGenerator
    from fmlab.gan.unlearn import StageConfig
    from fmlab.gan.unlearn.guide import GuideConfig
    from fmlab.gan.unlearn.guided import GuidedConfig
    from fmlab.results import ResultsStore

    w = _data_root()
    out = tmp_path / "run"
    rep = run_unlearn(UnlearnConfig(
        generator=str(w / "G--300.ckpt"), discriminator=str(w / "D--300.ckpt"), arch="mlp",
        target_class=1, out=out, n_split=300, n_eval=200, fisher_samples=4,
        adapt=StageConfig(steps=3, batch_size=16), unlearn=StageConfig(steps=3, batch_size=16),
        guided=GuidedConfig(guide=GuideConfig(steps=20), select_every=2, val_n=100),
        db=tmp_path / "r.db"))
    for f in ("generator.safetensors", "generator.json", "report.json", "samples_before.png",
              "samples_adapted.png", "samples_after.png"):
        assert (out / f).is_file(), f
    orig = torch.load(w / "G--300.ckpt", map_location="cpu", weights_only=True)
    saved = load_file(str(out / "generator.safetensors"))
    assert sorted(saved) == sorted(orig)
    G = MLPGenerator()
    G.load_state_dict(saved, strict=True)
    assert any(not torch.equal(saved[k], orig[k]) for k in orig)
    m = rep["metrics"]
    assert 0 <= m["after"]["target_share"] <= 1 and sum(m["before"]["histogram"]) == 200
    assert rep["stage2"]["d0"] > 0
    assert rep["stage2"]["guide"]["selection"]["chosen_step"] == 2
    rows = ResultsStore(tmp_path / "r.db").query(task="gan_unlearn")
    assert {r["metric"] for r in rows} >= {"target_share_before", "target_share_after",
                                           "fid_before", "fid_after"}


def test_cli_bad_input_exits_2_with_one_line(tmp_path, capsys, monkeypatch):
    import fmlab.cli.main as cli_main

    monkeypatch.setattr(cli_main, "build_parser", _parser)
    rc = cli_main.main(["gan", "unlearn", "--generator", str(tmp_path / "nope.ckpt"), "--arch",
                        "mlp", "--target-class", "3", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "nope.ckpt" in err
    rc = cli_main.main(["gan", "unlearn", "--generator", "x", "--target-class", "-1",
                        "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "target-class" in err


# ------------------------------------------------------------------- probe fixes, engine stage

@pytest.mark.parametrize("key, value", [("gamma", float("nan")), ("gamma", float("inf")),
                                        ("ewc_lambda", float("nan")), ("gamma", -1.0)])
def test_unlearn_config_refuses_non_finite_or_negative_hyperparameters(tmp_path, key, value):
    """Probe F1: ``--gamma nan`` trained NaN weights and wrote them as a success."""
    from fmlab.errors import ConfigError
    from fmlab.experiments.unlearn import UnlearnConfig

    flag = "--" + key.replace("_", "-")
    with pytest.raises(ConfigError, match=flag):
        UnlearnConfig(generator="g", target_class=1, out=tmp_path / "o", **{key: value})
    assert not (tmp_path / "o").exists()


def test_cli_gamma_nan_exits_2_and_writes_nothing(tmp_path, capsys, monkeypatch):
    import fmlab.cli.main as cli_main

    monkeypatch.setattr(cli_main, "build_parser", _parser)
    rc = cli_main.main(["gan", "unlearn", "--generator", str(tmp_path / "g.ckpt"), "--arch", "mlp",
                        "--target-class", "3", "--out", str(tmp_path / "o"), "--gamma", "nan"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "--gamma" in err and "nan" in err
    assert not (tmp_path / "o").exists()


def test_train_stage_keeps_the_callers_rng_and_fills_a_batch_from_few_images():
    from fmlab.gan.unlearn import StageConfig, train_stage

    G, D = _nets()
    data = torch.rand(3, 1, 3, 3) * 2 - 1  # fewer images than a batch: repeated to fill one
    torch.manual_seed(123)
    expect = torch.rand(4)
    torch.manual_seed(123)
    logs = train_stage(G, D, data, StageConfig(steps=4, batch_size=8, log_every=2), seed=0)
    assert torch.equal(torch.rand(4), expect)  # the stage drew from its own seeded streams
    assert [r["step"] for r in logs] == [2.0, 4.0]
    assert {"d_loss", "d_r1", "g_adv", "g_loss"} <= set(logs[0]) and not any(
        k.startswith("lr_") for k in logs[0])
    assert all(math.isfinite(v) for r in logs for v in r.values())


def test_train_stage_penalty_joins_the_g_loss():
    from fmlab.gan.unlearn import StageConfig, train_stage

    G, D = _nets()
    data = torch.rand(16, 1, 3, 3) * 2 - 1

    def penalty(g):
        term = sum(p.pow(2).sum() for p in g.parameters())
        return 0.5 * term, {"l2": float(term.detach())}

    logs = train_stage(G, D, data, StageConfig(steps=1, batch_size=8, log_every=1, ema_decay=0.0),
                       penalty=penalty, seed=0)
    r = logs[0]
    assert r["g_loss"] == pytest.approx(r["g_adv"] + 0.5 * r["l2"], rel=1e-5)


def test_store_rows_go_through_the_protocol(tmp_path):
    from fmlab.experiments.unlearn import UnlearnConfig, _store
    from fmlab.results import ResultsStore

    cfg = UnlearnConfig(generator="g", target_class=1, out=tmp_path, db=tmp_path / "r.db")
    hist = [1, 2]
    report = {"protocol": {"extractor": {"extractor": "lenet5_mnist", "backbone": "lenet5_mnist",
                                         "weights_sha256": "abc"}, "reference_hash": "h0"},
              "metrics": {w: {"target_share": 0.1, "fid": 2.0, "fid_positives": None,
                              "histogram": hist} for w in ("before", "after")},
              "seconds": 1.5}
    _store(cfg, report)
    rows = ResultsStore(tmp_path / "r.db").query(task="gan_unlearn")
    assert sorted(r["metric"] for r in rows) == ["fid_after", "fid_before", "target_share_after",
                                                 "target_share_before"]
    r = rows[0]
    assert (r["source"], r["split_hash"], r["backbone"], r["weights_hash"], r["method"]) == (
        "mnist:test", "h0", "lenet5_mnist", "abc", "nl2")
    assert len({row["run_id"] for row in rows}) == 1
