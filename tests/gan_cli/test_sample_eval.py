"""``fmlab gan sample`` and ``fmlab gan eval``: grids, metrics JSON, class recall, bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from fmlab.cli.main import main
from fmlab.experiments.gan_eval import make_extractor
from fmlab.gan.io import export_generator
from fmlab.gan import create_generator
from fmlab.metrics import to_uint8

EVAL = ["gan", "eval", "--features", "lenet5_mnist"]


@pytest.fixture
def generator_dir(tmp_path):
    """An exported conditional 16×16 DCGAN (untrained) in a run-directory layout."""
    torch.manual_seed(0)
    spec = {"arch": "dcgan", "kwargs": {"z_dim": 8, "ch": 4, "channels": 1, "img_size": 16,
                                        "num_classes": 10}}
    G = create_generator(spec["arch"], **spec["kwargs"])
    export_generator(G, spec, tmp_path / "gen", ema=False, step=0)
    return tmp_path / "gen"


def _json(capsys) -> dict:
    return json.loads(capsys.readouterr().out)


def test_sample_writes_png_grid(generator_dir, tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert main(["gan", "sample", "--generator", str(generator_dir), "--n", "12", "--nrow", "4",
                 "--labels", "3", "--seed", "1", "--out", str(out)]) == 0
    img = np.asarray(Image.open(out))
    assert img.shape == (3 * 18 + 2, 4 * 18 + 2)  # 12 tiles of 16 px, 2 px gaps
    # the same seed gives the same grid, through the .safetensors path as well
    again = tmp_path / "again.png"
    assert main(["gan", "sample", "--generator", str(generator_dir / "generator.safetensors"),
                 "--n", "12", "--nrow", "4", "--labels", "3", "--seed", "1",
                 "--out", str(again)]) == 0
    assert np.array_equal(img, np.asarray(Image.open(again)))
    capsys.readouterr()
    assert main(["gan", "sample", "--generator", str(generator_dir), "--n", "4",
                 "--labels", "10", "--out", str(tmp_path / "x.png")]) == 2
    assert "--labels: '10' must name classes in 0..9" in capsys.readouterr().err


def test_eval_of_the_reference_itself_gives_fid_zero(digits_npz, tmp_path, capsys):
    z = np.load(digits_npz)
    fakes = tmp_path / "fakes.npz"
    np.savez(fakes, images=z["x_test"], labels=z["y_test"].astype(np.int64))
    torch.manual_seed(0)  # LeNet-5 is randomly initialised when FMLAB_DATA is unset
    assert main([*EVAL, "--fake-images", str(fakes), "--ref", f"npz:{digits_npz}:test",
                 "--metrics", "fid,kid,is,prdc,ifid", "--json"]) == 0
    res = _json(capsys)
    assert set(res) == {"fid", "kid", "is", "prdc", "ifid", "class_recall", "protocol"}
    assert abs(res["fid"]) < 1e-6
    assert all(abs(v) < 1e-6 for v in res["ifid"]["per_class"].values())
    assert res["prdc"]["precision"] == 1.0 and res["prdc"]["recall"] == 1.0
    assert res["protocol"]["n_fake"] == res["protocol"]["n_real"] == 40
    assert res["protocol"]["extractor"] == "lenet5_mnist"

    # class recall = fraction of each class's samples the extractor's classifier calls y
    torch.manual_seed(0)
    ext = make_extractor("lenet5_mnist")
    _, probs = ext.extract(z["x_test"], probs=True)
    pred, y = probs.argmax(1), z["y_test"]
    expect = {str(c): float(np.mean(pred[y == c] == c)) for c in range(10)}
    assert res["class_recall"]["per_class"] == pytest.approx(expect)
    assert res["class_recall"]["mean"] == pytest.approx(np.mean(list(expect.values())))


def test_eval_intra_class_prdc(tmp_path, capsys):
    """``iprdc``: PRDC per class; the reference against itself is perfect in every class, and a
    fake set that is one image per class keeps its precision but loses its per-class recall."""
    from tests.conftest import make_npz

    npz = make_npz(tmp_path / "d.npz", n_train=16, n_test=120, n_classes=4, hw=(16, 16),
                   channels=None)
    z = np.load(npz)
    x, y = z["x_test"], z["y_test"].astype(np.int64)
    same, collapsed = tmp_path / "same.npz", tmp_path / "collapsed.npz"
    np.savez(same, images=x, labels=y)
    first = {int(c): int(np.flatnonzero(y == c)[0]) for c in np.unique(y)}
    np.savez(collapsed, images=x[[first[int(c)] for c in y]], labels=y)
    results = []
    for fakes in (same, collapsed):
        torch.manual_seed(0)
        assert main([*EVAL, "--fake-images", str(fakes), "--ref", f"npz:{npz}:test",
                     "--metrics", "iprdc", "--json"]) == 0
        results.append(_json(capsys)["iprdc"])
    perfect, one_each = results
    assert perfect["precision"] == perfect["recall"] == perfect["coverage"] == 1.0
    assert sorted(perfect["per_class"]) == ["0", "1", "2", "3"]
    assert one_each["precision"] == 1.0 and one_each["recall"] < 0.2


def test_eval_of_a_generator_with_db(generator_dir, digits_npz, tmp_path, capsys):
    db = tmp_path / "r.db"
    assert main([*EVAL, "--generator", str(generator_dir), "--ref", f"npz:{digits_npz}:test",
                 "--metrics", "fid,ifid", "--n", "50", "--json", "--db", str(db)]) == 0
    res = _json(capsys)
    # conditional G with as many classes as LeNet-5 → class_recall comes with the metrics
    assert set(res) == {"fid", "ifid", "class_recall", "protocol"}
    assert res["fid"] > 0 and res["protocol"]["n_fake"] == 50
    assert res["protocol"]["generator"]["arch"] == "dcgan"
    assert main(["results", "show", "--db", str(db), "--format", "json"]) == 0
    rows = _json(capsys)
    assert {r["metric"] for r in rows} == {"fid", "ifid", "class_recall"}
    assert {r["task"] for r in rows} == {"gan"}
    # one record path (ResultsStore.record + Protocol): the protocol's facts fill the columns
    ref_hash = res["protocol"]["reference"]["content_hash"]
    assert {(r["source"], r["backbone"], r["split_hash"], r["method"]) for r in rows} == {
        (f"npz:{digits_npz}:test", "lenet5_mnist", ref_hash, "dcgan")}
    assert len({r["run_id"] for r in rows}) == 1 and all(r["seconds"] is not None for r in rows)
    fid = next(r for r in rows if r["metric"] == "fid")
    assert fid["value"] == pytest.approx(res["fid"])


@pytest.mark.parametrize("case, message", [
    ("missing_key", "missing key 'images'"),
    ("float", "'images' must be uint8, got float32"),
    ("one_image", "needs at least 2 images, got 1"),
    ("ifid_no_labels", "metric(s) ifid need the class of every fake sample"),
    ("n_too_large", "holds 40 images, fewer than the 100 asked for"),
    ("bad_metric", "unknown metric(s) ['fidd']"),
    ("both_inputs", "give exactly one of --generator or --fake-images"),
])
def test_bad_eval_input_exits_2_with_one_line(case, message, digits_npz, tmp_path, capsys):
    x = np.load(digits_npz)["x_test"]
    path = tmp_path / "f.npz"
    arrays = {"missing_key": {"imgs": x}, "float": {"images": x.astype(np.float32)},
              "one_image": {"images": x[:1]}}.get(case, {"images": x})
    np.savez(path, **arrays)
    args = [*EVAL, "--fake-images", str(path), "--ref", f"npz:{digits_npz}:test"]
    args += {"ifid_no_labels": ["--metrics", "fid,ifid"], "n_too_large": ["--n", "100"],
             "bad_metric": ["--metrics", "fid,fidd"],
             "both_inputs": ["--generator", str(tmp_path)]}.get(case, [])
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and err.startswith("fmlab: error:")


def test_bad_input_in_a_subprocess_has_no_traceback(digits_npz, tmp_path):
    path = tmp_path / "f.npz"
    np.savez(path, images=np.zeros((5, 8, 8), np.int16))
    r = subprocess.run([sys.executable, "-m", "fmlab", *EVAL, "--fake-images", str(path),
                        "--ref", f"npz:{digits_npz}:test"], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [
        f"fmlab: error: {path}: 'images' must be uint8, got int16"]


def test_shipped_mlp_checkpoint_with_arch_mlp(data_root, tmp_path, capsys):
    ckpt = data_root / "weights" / "mnist_small" / "G--300.ckpt"
    out = tmp_path / "mlp.png"
    assert main(["gan", "sample", "--generator", str(ckpt), "--arch", "mlp", "--n", "16",
                 "--seed", "0", "--out", str(out)]) == 0
    assert Image.open(out).size == (4 * 30 + 2, 4 * 30 + 2)  # 28-px digits

    # the samples are the original nn.Sequential's, quantised by rounding
    seq = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                        nn.Linear(256, 784), nn.Tanh())
    seq.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True))
    from fmlab.gan.io import generate_images, load_generator

    G, _ = load_generator(ckpt, arch="mlp")
    images, labels = generate_images(G, 300, seed=5, batch_size=300)
    z = torch.randn(300, 64, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expect = to_uint8(seq(z).view(300, 28, 28))
    assert labels is None and np.array_equal(images, expect)

    capsys.readouterr()
    assert main([*EVAL, "--generator", str(ckpt), "--arch", "mlp", "--ref", "mnist:test",
                 "--ref-n", "500", "--n", "500", "--metrics", "fid", "--json"]) == 0
    res = _json(capsys)
    assert 50 < res["fid"] < 400  # a weak GAN: far from 0, finite
    assert res["protocol"]["weights_sha256"] is not None  # FID-LeNet with the shipped weights
    assert main([*EVAL, "--generator", str(ckpt), "--ref", "mnist:test"]) == 2
    assert "pass --arch NAME" in capsys.readouterr().err
