"""Zero-shot weights (CLIP_benchmark protocol), templates files, and zero-shot ensembles."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fmlab.adapt import GDA, NCM, ZeroShot, ZeroShotEnsemble, build_zeroshot_weights
from fmlab.errors import DataError


def fake_encoder(texts):
    """Deterministic pseudo-embeddings: a hash-seeded vector per string."""
    out = []
    for t in texts:
        rng = np.random.default_rng(sum(ord(ch) * (i + 1) for i, ch in enumerate(t)))
        out.append(rng.normal(size=6) * (1 + len(t)))
    return torch.tensor(np.array(out))


def test_weights_follow_the_protocol(tmp_path):
    names = ["cat", "dog", "airplane"]
    templates = ["a photo of a {}.", "a blurry photo of the {}.", "{}"]
    path = tmp_path / "t.json"
    path.write_text(json.dumps(templates))
    W = build_zeroshot_weights(names, path, fake_encoder).numpy()
    for i, n in enumerate(names):
        embs = [fake_encoder([t.format(n)])[0].numpy() for t in templates]
        m = np.mean([e / np.linalg.norm(e) for e in embs], axis=0)
        np.testing.assert_allclose(W[i], m / np.linalg.norm(m), rtol=1e-5)
    np.testing.assert_allclose(W, build_zeroshot_weights(names, templates, fake_encoder).numpy())


@pytest.mark.parametrize("content,match", [
    ("not json", "not valid JSON"),
    ('{"a": 1}', "non-empty JSON list"),
    ("[]", "non-empty JSON list"),
    ('["a photo"]', "exactly one"),
    ('["{} and {}"]', "exactly one"),
    ("[3]", "not a string"),
])
def test_bad_templates_file_names_the_file(tmp_path, content, match):
    path = tmp_path / "bad_templates.json"
    path.write_text(content)
    with pytest.raises(DataError, match=match) as e:
        build_zeroshot_weights(["cat"], path, fake_encoder)
    assert "bad_templates.json" in str(e.value)
    with pytest.raises(DataError, match="does not exist"):
        build_zeroshot_weights(["cat"], tmp_path / "missing.json", fake_encoder)


def test_zeroshot_scores_are_100_cosine():
    rng = np.random.default_rng(0)
    W, X = rng.normal(size=(4, 5)), rng.normal(size=(7, 5))
    ref = np.array([[100 * x @ w / np.linalg.norm(x) / np.linalg.norm(w) for w in W] for x in X])
    zs = ZeroShot(W).fit()
    np.testing.assert_allclose(zs.decision_function(X), ref, rtol=1e-10)
    np.testing.assert_array_equal(zs.predict(X), ref.argmax(1))
    with pytest.raises(DataError, match="features"):
        zs.decision_function(X[:, :3])


def test_ensemble_alpha_matches_brute_force(mixture):
    X, y, means = mixture(3, 5, 12, seed=0, spread=2.0)
    Xv, yv, _ = mixture(6, 5, 12, seed=1, spread=2.0, means=means)
    zs = means + 3.0 * np.random.default_rng(2).normal(size=means.shape)
    ens = ZeroShotEnsemble(GDA(), zs).fit(X, y, X_val=Xv, y_val=yv)
    gda = GDA().fit(X, y)
    s_zs = ZeroShot(zs).decision_function(Xv)
    best = None
    for a in (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0):
        s = s_zs + a * gda.decision_function(Xv)
        acc = np.mean(s.argmax(1) == yv)
        s = s - s.max(1, keepdims=True)
        loss = -np.mean((s - np.log(np.exp(s).sum(1, keepdims=True)))[np.arange(len(yv)), yv])
        if best is None or (-acc, loss) < best[0]:
            best = ((-acc, loss), a)
    assert ens.hyperparameters_["alpha"] == pytest.approx(best[1])
    np.testing.assert_allclose(
        ens.decision_function(Xv), s_zs + best[1] * gda.decision_function(Xv), rtol=1e-6)


def test_ensemble_beats_a_poor_zero_shot(mixture):
    X, y, means = mixture(8, 10, 32, seed=3, spread=1.0)
    Xv, yv, _ = mixture(4, 10, 32, seed=4, spread=1.0, means=means)
    Q, yq, _ = mixture(50, 10, 32, seed=5, spread=1.0, means=means)
    zs = means + 4.0 * np.random.default_rng(6).normal(size=means.shape)
    zs_acc = np.mean(ZeroShot(zs).predict(Q) == yq)
    ens_acc = np.mean(ZeroShotEnsemble(NCM(), zs).fit(X, y, X_val=Xv, y_val=yv).predict(Q) == yq)
    assert ens_acc > zs_acc + 0.1


def test_ensemble_requires_matching_classes(mixture):
    X, y, _means = mixture(3, 4, 6, seed=0)
    with pytest.raises(DataError, match="classes 0..4"):
        ZeroShotEnsemble(NCM(), np.ones((5, 6)), alpha=1.0).fit(X, y)
    with pytest.raises(DataError, match="features"):
        ZeroShotEnsemble(NCM(), np.ones((4, 7)), alpha=1.0).fit(X, y)
