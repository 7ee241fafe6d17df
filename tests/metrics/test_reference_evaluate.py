"""Reference-statistics cache, protocol records and ``evaluate``."""

import numpy as np
import pytest
import torch

from fmlab.errors import ConfigError, DataError
from fmlab.metrics import (
    create_extractor,
    evaluate,
    feature_statistics,
    fid,
    inception_score,
    intra_fid,
    intra_prdc,
    kid,
    metric_protocol,
    prdc,
    reference_statistics,
)

pytestmark = pytest.mark.filterwarnings("ignore:feature extractor")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FMLAB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def split(tmp_path):
    from fmlab.data import open_source

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (60, 28, 28), dtype=np.uint8)
    y = np.repeat(np.arange(3), 20).astype(np.int64)
    path = tmp_path / "tiny.npz"
    np.savez(path, x_train=x, y_train=y, x_test=x[:10], y_test=y[:10])
    return open_source(f"npz:{path}").split("train")


@pytest.fixture
def ext():
    torch.manual_seed(0)
    return create_extractor("lenet5_mnist", batch_size=16)


def test_reference_statistics_are_cached_and_keyed(cache, split, ext):
    feats = ext(split.get_batch(np.arange(40)))
    s1 = reference_statistics(ext, split, n=40)
    mu, sigma = feature_statistics(feats)
    np.testing.assert_allclose(s1.mu, mu, rtol=1e-10)
    np.testing.assert_allclose(s1.sigma, sigma, rtol=1e-8, atol=1e-12)
    assert not s1.from_cache and s1.path.parent == cache / "ref_stats"
    assert s1.key["selection"] == "first" and s1.key["n"] == 40
    s2 = reference_statistics(ext, split, n=40)
    assert s2.from_cache and s2.path == s1.path
    np.testing.assert_array_equal(s2.sigma, s1.sigma)
    # Another n, another seed or another extractor is another file.
    s3 = reference_statistics(ext, split, n=40, seed=1)
    assert s3.path != s1.path and s3.key["selection"] == "random(seed=1)"
    idx = np.sort(np.random.default_rng(1).choice(60, 40, replace=False))
    np.testing.assert_allclose(s3.mu, ext(split.get_batch(idx)).mean(0), rtol=1e-10)
    torch.manual_seed(1)
    other = create_extractor("lenet5_mnist")
    other.protocol["weights_sha256"] = "different"
    assert reference_statistics(other, split, n=40).path != s1.path
    with pytest.raises(DataError, match="n=61"):
        reference_statistics(ext, split, n=61)


def test_reference_cache_rejects_a_file_with_another_key(cache, split, ext):
    s1 = reference_statistics(ext, split)
    with np.load(s1.path) as z:
        arrays = dict(z)
    arrays["key"] = np.array('{"not": "this"}')
    arrays["mu"] = arrays["mu"] + 1.0
    np.savez(s1.path, **arrays)
    s2 = reference_statistics(ext, split)
    assert not s2.from_cache
    np.testing.assert_allclose(s2.mu, s1.mu)


def test_reference_per_class_stats(cache, split, ext):
    s = reference_statistics(ext, split, per_class=True)
    feats = ext(split.get_batch(np.arange(60)))
    for c in range(3):
        mu, sigma = feature_statistics(feats[split.labels == c])
        np.testing.assert_allclose(s.per_class[c][0], mu, rtol=1e-10)
        np.testing.assert_allclose(s.per_class[c][1], sigma, rtol=1e-8, atol=1e-12)
    loaded = reference_statistics(ext, split, per_class=True)
    assert loaded.from_cache and loaded.class_counts == {0: 20, 1: 20, 2: 20}


def test_evaluate_on_features_equals_the_functions():
    rng = np.random.default_rng(1)
    real, fake = rng.standard_normal((50, 4)), rng.standard_normal((40, 4)) + 0.2
    yr, yf = np.repeat(np.arange(2), 25), np.tile(np.arange(2), 20)
    logits = rng.standard_normal((40, 3))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    out = evaluate(fake, real, fake_labels=yf, ref_labels=yr, fake_probs=probs, seed=3,
                   kid_subsets=4, is_splits=2, prdc_k=3, reference="npz:x.npz",
                   reference_split="train")
    assert out["fid"] == pytest.approx(fid(real, fake))
    assert out["kid"] == kid(real, fake, 4, 40, 3)._asdict()
    assert out["is"] == inception_score(probs, 2, 3)._asdict()
    assert out["prdc"] == prdc(real, fake, k=3)
    assert out["ifid"] == intra_fid(real, yr, fake, yf)
    labelled = evaluate(fake, real, metrics=("iprdc",), fake_labels=yf, ref_labels=yr, prdc_k=3)
    assert labelled["iprdc"] == intra_prdc(real, yr, fake, yf, k=3)
    assert labelled["protocol"]["prdc_k"] == 3
    p = out["protocol"]
    assert (p["n_real"], p["n_fake"], p["seed"], p["kid_subset_size"]) == (50, 40, 3, 40)
    assert p["reference"] == {"source": "npz:x.npz", "split": "train", "content_hash": None}
    assert p["extractor"] is None and p["fake_input"] == "features"


def test_evaluate_images_against_a_split(cache, split, ext):
    rng = np.random.default_rng(2)
    fake = rng.integers(0, 256, (30, 28, 28), dtype=np.uint8)
    fake_y = np.tile(np.arange(3), 10)
    fid_only = evaluate(fake, split, ext, metrics=("fid", "ifid"), fake_labels=fake_y)
    real_f, fake_f = ext(split.get_batch(np.arange(60))), ext(fake)
    assert fid_only["fid"] == pytest.approx(fid(real_f, fake_f), rel=1e-8)
    assert fid_only["ifid"]["mean"] == pytest.approx(
        intra_fid(real_f, split.labels, fake_f, fake_y)["mean"], rel=1e-8)
    assert list((cache / "ref_stats").glob("*.npz"))  # FID-only runs fill the cache
    full = evaluate(fake, split, ext, metrics=("fid", "kid", "is", "prdc", "ifid"),
                    fake_labels=fake_y, kid_subsets=3, is_splits=3)
    assert full["fid"] == pytest.approx(fid_only["fid"], rel=1e-8)
    assert full["kid"]["mean"] == pytest.approx(kid(real_f, fake_f, 3, 30, 0).mean, rel=1e-8)
    p = full["protocol"]
    assert p["extractor"] == "lenet5_mnist" and p["fake_input"] == "images"
    assert p["reference"]["content_hash"] == split.content_hash
    assert p["reference"]["split"] == "train" and p["reference_selection"] == "all"
    assert p["n_real"] == 60 and p["n_fake"] == 30 and p["kid_subset_size"] == 30


def test_evaluate_errors(ext):
    rng = np.random.default_rng(3)
    f = rng.standard_normal((20, 4))
    imgs = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    with pytest.raises(ConfigError, match="unknown metric"):
        evaluate(f, f, metrics=("fid", "lpips"))
    with pytest.raises(ConfigError, match="give an extractor"):
        evaluate(imgs, f, metrics=("fid",))
    with pytest.raises(ConfigError, match="needs class probabilities"):
        evaluate(f, f, metrics=("is",))
    with pytest.raises(ConfigError, match="needs fake_labels"):
        evaluate(f, f, metrics=("ifid",))
    with pytest.raises(ConfigError, match="'iprdc' needs fake_labels"):
        evaluate(f, f, metrics=("iprdc",))
    with pytest.raises(DataError, match="must be uint8"):
        evaluate(imgs.astype(np.float32), f, ext, metrics=("fid",))
    with pytest.raises(DataError, match="feature dimensions differ"):
        evaluate(imgs, f, ext, metrics=("fid",))


def test_metric_protocol_records_everything():
    p = metric_protocol({"extractor": "x", "weights_sha256": "ab"}, n_real=10, n_fake=5,
                        reference="mnist", split="test", seed=7, kid_subsets=100)
    assert p == {"extractor": "x", "weights_sha256": "ab", "n_real": 10, "n_fake": 5,
                 "reference": {"source": "mnist", "split": "test", "content_hash": None},
                 "seed": 7, "kid_subsets": 100}
