"""The sweep: record contents, leak-freedom for every method, reporting."""

from __future__ import annotations

import numpy as np
import pytest

from fmlab import adapt
from fmlab.adapt import METHODS, load_split, plot_accuracy_vs_shots, run_sweep, summarize
from fmlab.errors import ConfigError, DataError
from fmlab.utils.io import sha256_file

# coop needs an image-text model; its own leak test is in tests/multimodal/test_adapt_clip_model.py
# the methods that need an image-text model have their own leak test (tests/multimodal)
ALL_METHODS = [m for m in METHODS.names() if "model" not in METHODS.get(m).requires]


@pytest.fixture
def task(mixture):
    Xtr, ytr, means = mixture(12, 5, 16, seed=0, spread=1.5)
    Xte, yte, _ = mixture(20, 5, 16, seed=1, spread=1.5, means=means)
    zs = means + 2.0 * np.random.default_rng(2).normal(size=means.shape)
    views = np.stack([Xtr + 0.3 * np.random.default_rng(v).normal(size=Xtr.shape)
                      for v in range(3)])
    return Xtr, ytr, Xte, yte, zs, views, means


def test_records_and_split_files(tmp_path, task):
    Xtr, ytr, Xte, yte, zs, _, _ = task
    recs = run_sweep(Xtr, ytr, Xte, yte, ["ncm", "gda+zs", "zeroshot"], shots=(1, 4),
                     seeds=(1, 2), zeroshot_weights=zs, split_dir=tmp_path)
    assert len(recs) == 3 * 2 * 2
    keys = {"method", "shots", "seed", "accuracy", "mean_per_class_recall", "fit_seconds",
            "split_sha256", "hyperparameters", "n_train", "n_val", "n_test"}
    for r in recs:
        assert keys <= set(r)
        path = tmp_path / f"split_{r['shots']}shot_seed{r['seed']}.json"
        assert r["split_sha256"] == sha256_file(path)
        split = load_split(path, labels=ytr)
        assert r["n_train"] == len(split.train) == 5 * r["shots"]
        assert r["n_val"] == len(split.val) == 5 * min(r["shots"], 4)
        assert r["n_test"] == len(yte)
        pred_acc = r["accuracy"]
        assert 0.0 <= pred_acc <= 1.0
    gda = [r for r in recs if r["method"] == "gda+zs"]
    assert all("alpha" in r["hyperparameters"] for r in gda)
    # the recorded accuracy is the fitted model's test accuracy
    zs_acc = np.mean(adapt.ZeroShot(zs).predict(Xte) == yte)
    assert all(r["accuracy"] == pytest.approx(zs_acc) for r in recs if r["method"] == "zeroshot")


def _fit_fingerprints(task, Xte, yte, probe):
    Xtr, ytr, _, _, zs, views, _ = task
    seen = {}

    def on_fit(method, shots, seed, est):
        seen[(method, shots, seed)] = (est.hyperparameters_, est.decision_function(probe))

    recs = run_sweep(Xtr, ytr, Xte, yte, ALL_METHODS, shots=(1, 4), seeds=(3,),
                     train_view_features=views, zeroshot_weights=zs, on_fit=on_fit)
    return recs, seen


def test_test_data_never_reaches_fit_or_any_choice(task, mixture, monkeypatch):
    """Two sweeps with unrelated test sets must fit identical models for every method; and no
    fit call may ever receive a test row."""
    _, _, Xte, yte, _, _, means = task
    probe, _, _ = mixture(4, 5, 16, seed=99, means=means)
    other_X, other_y, _ = mixture(7, 5, 16, seed=123, spread=3.0)
    other_y = (other_y + 1) % 5  # labels unrelated to the features

    test_rows = {r.tobytes() for r in np.vstack([Xte, other_X]).astype(np.float32)}
    calls = []
    for cls in (adapt.Estimator, adapt.NCM, adapt.ZeroShot, adapt.ZeroShotEnsemble):
        orig = cls.fit

        def guarded(self, *args, _orig=orig, **kwargs):
            for a in list(args) + list(kwargs.values()):
                if a is None or np.ndim(a) == 1:
                    continue
                rows = np.asarray(a, dtype=np.float32).reshape(-1, np.shape(a)[-1])
                assert not any(r.tobytes() in test_rows for r in rows), type(self).__name__
            calls.append(type(self).__name__)
            return _orig(self, *args, **kwargs)

        monkeypatch.setattr(cls, "fit", guarded)

    recs_a, fits_a = _fit_fingerprints(task, Xte, yte, probe)
    recs_b, fits_b = _fit_fingerprints(task, other_X, other_y, probe)
    assert set(calls) >= {"NCM", "KNN", "LinearProbe", "GDA", "TipAdapter", "TipAdapterF",
                          "ZeroShot", "ZeroShotEnsemble"}
    assert fits_a.keys() == fits_b.keys()
    assert {m for m, _, _ in fits_a} == set(ALL_METHODS)
    for key in fits_a:
        assert fits_a[key][0] == fits_b[key][0], key
        np.testing.assert_array_equal(fits_a[key][1], fits_b[key][1], err_msg=str(key))
    # sanity: the test sets really differ, so the records do
    assert [r["accuracy"] for r in recs_a] != [r["accuracy"] for r in recs_b]


def test_methods_learn_on_the_mixture(mixture):
    Xtr, ytr, means = mixture(12, 5, 16, seed=0, spread=1.0)
    Xte, yte, _ = mixture(20, 5, 16, seed=1, spread=1.0, means=means)
    recs = run_sweep(Xtr, ytr, Xte, yte, ["ncm", "knn", "linear", "gda", "tip", "tipf"],
                     shots=(8,), seeds=(1,))
    for r in recs:
        assert r["accuracy"] > 0.6, r  # chance is 0.2


def test_bad_inputs(task):
    Xtr, ytr, Xte, yte, _zs, _, _ = task
    with pytest.raises(ConfigError, match="zero-shot class weights"):
        run_sweep(Xtr, ytr, Xte, yte, ["gda+zs"], shots=(1,), seeds=(1,))
    with pytest.raises(Exception, match="unknown adapt method 'nope'"):
        run_sweep(Xtr, ytr, Xte, yte, ["nope"], shots=(1,), seeds=(1,))
    with pytest.raises(DataError, match=r"class 0 \('a'\) has 12 train images"):
        run_sweep(Xtr, ytr, Xte, yte, ["ncm"], shots=(10,), seeds=(1,),
                  class_names=list("abcde"))
    keep = ytr != 3
    with pytest.raises(DataError, match=r"class 3 \('d'\) has no images"):
        run_sweep(Xtr[keep], ytr[keep], Xte, yte, ["ncm"], shots=(1,), seeds=(1,),
                  class_names=list("abcde"))
    bad = Xtr.copy()
    bad[3, 2] = np.nan
    with pytest.raises(DataError, match="NaN or infinite"):
        run_sweep(bad, ytr, Xte, yte, ["ncm"], shots=(1,), seeds=(1,))
    with pytest.raises(DataError, match="test_features have 15 features"):
        run_sweep(Xtr, ytr, Xte[:, :15], yte, ["ncm"], shots=(1,), seeds=(1,))
    with pytest.raises(ConfigError, match="not in the sweep"):
        run_sweep(Xtr, ytr, Xte, yte, ["ncm"], shots=(1,), seeds=(1,),
                  method_params={"gda": {"covariance": "oas"}})


def test_method_params_reach_the_estimator(task):
    Xtr, ytr, Xte, yte, _, _, _ = task
    recs = run_sweep(Xtr, ytr, Xte, yte, ["gda"], shots=(2,), seeds=(1,),
                     method_params={"gda": {"covariance": "oas"}})
    assert recs[0]["hyperparameters"]["covariance"] == "oas"


def _fake_records():
    rng = np.random.default_rng(0)
    recs = []
    for m, base in (("ncm", 0.5), ("gda", 0.6)):
        for k_i, k in enumerate((1, 2, 4, "all")):
            for seed in (1, 2, 3):
                recs.append({"method": m, "shots": k, "seed": seed,
                             "accuracy": base + 0.05 * k_i + 0.01 * rng.normal(),
                             "fit_seconds": 0.1})
    return recs


def test_summarize_table():
    recs = _fake_records()
    table = summarize(recs)
    lines = table.strip().splitlines()
    assert lines[0].split("|")[1:-1] == [" method ", " 1-shot ", " 2-shot ", " 4-shot ", " all ",
                                         " fit s "]
    row = lines[2].split("|")[1:-1]
    assert row[0].strip() == "ncm"
    acc = [r["accuracy"] for r in recs if r["method"] == "ncm" and r["shots"] == 2]
    assert row[2].strip() == f"{100 * np.mean(acc):.1f} ± {100 * np.std(acc, ddof=1):.1f}"
    assert row[-1].strip() == "0.100"


def test_plot_writes_a_png(tmp_path):
    out = plot_accuracy_vs_shots(_fake_records(), tmp_path / "acc.png")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left
