"""Spectrum metrics (SVE, LSVR) against NumPy, on known cases, and ``fmlab adapt spectrum``."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from fmlab.cli.main import main
from fmlab.errors import DataError
from fmlab.features import FeatureSet, save_features
from fmlab.metrics.spectrum import (
    feature_spectrum,
    largest_singular_value_ratio,
    singular_value_entropy,
    spectrum_metrics,
)


def _numpy_reference(X: np.ndarray, center: str) -> tuple[np.ndarray, float, float]:
    X = X / np.linalg.norm(X, axis=1, keepdims=True)
    if center == "column":
        X = X - X.mean(axis=0, keepdims=True)
    elif center == "row":
        X = X - X.mean(axis=1, keepdims=True)
    s = np.linalg.svd(X, compute_uv=False)
    p = s / s.sum()
    p_pos = p[p > 0]
    return s, float(-(p_pos * np.log(p_pos)).sum()), float(-np.log(p.max()))


@pytest.mark.parametrize("shape", [(50, 8), (6, 20), (200, 32)])
@pytest.mark.parametrize("center", ["column", "row", "none"])
def test_matches_numpy_svd(shape, center):
    rng = np.random.default_rng(sum(shape))
    X = rng.normal(size=shape) @ rng.normal(size=(shape[1], shape[1]))  # correlated columns
    s_ref, sve_ref, lsvr_ref = _numpy_reference(X, center)
    s = feature_spectrum(torch.as_tensor(X, dtype=torch.float32), center=center).numpy()
    np.testing.assert_allclose(s, s_ref, rtol=1e-5, atol=1e-6)
    m = spectrum_metrics(X, center=center)
    assert m["sve"] == pytest.approx(sve_ref, rel=1e-6)
    assert m["lsvr"] == pytest.approx(lsvr_ref, rel=1e-6)
    assert m["top_share"] == pytest.approx(math.exp(-lsvr_ref), rel=1e-6)
    assert 0 <= m["sve"] <= math.log(min(shape)) + 1e-9


def test_rank_one_gives_zero():
    v = np.random.default_rng(0).normal(size=16)
    c = np.array([1.0, -2.0, 3.0, -0.5, 0.7])
    X = c[:, None] * v[None, :]  # rows ±v after normalisation: rank 1 after centring too
    m = spectrum_metrics(X)
    assert m["sve"] == pytest.approx(0.0, abs=1e-6)
    assert m["lsvr"] == pytest.approx(0.0, abs=1e-6)
    assert singular_value_entropy([5.0, 0.0, 0.0]) == 0.0
    assert largest_singular_value_ratio([5.0, 0.0, 0.0]) == 0.0


@pytest.mark.parametrize("d", [2, 7, 32])
def test_isotropic_gives_log_d(d):
    eye = np.eye(d)
    X = np.concatenate([3.0 * eye, -0.5 * eye])  # rows ±e_i: centred, every σ equal
    m = spectrum_metrics(X)
    assert m["sve"] == pytest.approx(math.log(d), rel=1e-9)
    assert m["lsvr"] == pytest.approx(math.log(d), rel=1e-9)


def test_invariances_and_views():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 10))
    Q, _ = np.linalg.qr(rng.normal(size=(10, 10)))
    base = spectrum_metrics(X)
    rotated = spectrum_metrics(X @ Q)  # rotations of feature space change nothing
    scaled = spectrum_metrics(X * rng.uniform(0.1, 10, size=(40, 1)))  # nor row scales
    for other in (rotated, scaled):
        assert other["sve"] == pytest.approx(base["sve"], rel=1e-9)
        assert other["lsvr"] == pytest.approx(base["lsvr"], rel=1e-9)
    views = np.stack([X, X[::-1]])
    assert spectrum_metrics(views)["n"] == 80


def test_degenerate_inputs_are_refused():
    with pytest.raises(DataError, match="undefined"):
        spectrum_metrics(np.ones((5, 3)))  # identical rows: nothing left after centring
    with pytest.raises(DataError, match="shape"):
        spectrum_metrics(np.ones(5))
    with pytest.raises(DataError, match="NaN"):
        spectrum_metrics(np.array([[1.0, np.nan], [0.0, 1.0]]))


def test_cli_reads_feature_files(tmp_path, capsys):
    rng = np.random.default_rng(2)
    X = rng.normal(size=(30, 6)).astype(np.float32)
    ref = spectrum_metrics(X)
    fs = FeatureSet(torch.from_numpy(X), torch.zeros(30, dtype=torch.int64), {"backbone": "toy"})
    paths = [save_features(fs, tmp_path / "f.safetensors"), tmp_path / "f.npy"]
    np.save(paths[1], X)
    for p in paths:
        assert main(["adapt", "spectrum", "--features", str(p), "--json"]) == 0
        got = json.loads(capsys.readouterr().out)
        assert got["sve"] == pytest.approx(ref["sve"], rel=1e-6)
        assert got["lsvr"] == pytest.approx(ref["lsvr"], rel=1e-6)
    assert main(["adapt", "spectrum", "--features", str(paths[1])]) == 0
    out = capsys.readouterr().out
    assert "SVE" in out and "LSVR" in out


def test_cli_bad_file_exits_2_naming_it(tmp_path, capsys):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    flat = tmp_path / "flat.npy"
    np.save(flat, np.zeros(4))
    for p in (bad, flat, tmp_path / "missing.npy"):
        assert main(["adapt", "spectrum", "--features", str(p)]) == 2
        err = capsys.readouterr().err
        assert str(p) in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_adapt_still_requires_data_and_out(capsys):
    with pytest.raises(SystemExit) as e:
        main(["adapt", "--backbone", "resnet20_cifar"])
    assert e.value.code == 2
    assert "--data, --out" in capsys.readouterr().err
