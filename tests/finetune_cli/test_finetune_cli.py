"""fmlab finetune end to end on a tiny npz: every method trains through the engine, writes its
outputs with the split hash, and its saved adapter reloads onto a fresh base with the same outputs.
"""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest
import torch

from fmlab.adapt.splits import load_split, make_split
from fmlab.cli.main import main
from fmlab.experiments.finetune import load_finetuned
from tests.conftest import make_npz

CNN_METHODS = ["full", "linear", "bitfit", "lora", "svfit", "pela"]
FAST = ["--set", "trainer.max_steps=3", "--set", "distill_steps=2", "--set",
        "trainer.batch_size=4"]


@pytest.fixture(scope="module")
def cnn_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("ft")
    npz = make_npz(d / "tiny.npz", n_train=24, n_test=12, n_classes=3, hw=(16, 16))
    out = d / "out"
    rc = main(["finetune", "--backbone", "resnet20_cifar", "--data", f"npz:{npz}",
               "--method", ",".join(CNN_METHODS), "--shots", "2", "--seeds", "1",
               "--option", "lora.r=2", "--out", str(out), *FAST])
    assert rc == 0
    return npz, out


def _test_images(npz):
    z = np.load(npz)
    return torch.from_numpy(z["x_test"]), torch.from_numpy(z["y_test"].astype(np.int64))


def _check_reload(run_dir, npz, record):
    meta = json.loads((run_dir / "finetune.json").read_text())
    model = load_finetuned(run_dir)
    x, y = _test_images(npz)
    with torch.no_grad():
        logits = model(x)
    ref = torch.tensor(meta["check_logits"])
    torch.testing.assert_close(logits[: len(ref)], ref, rtol=0, atol=1e-5)
    assert float((logits.argmax(1) == y).float().mean()) == pytest.approx(record["accuracy"])


def test_every_method_writes_results_and_reloads(cnn_run):
    npz, out = cnn_run
    records = json.loads((out / "results.json").read_text())
    assert [r["method"] for r in records] == CNN_METHODS
    labels = np.load(npz)["y_train"].astype(np.int64)
    split_file = out / "splits" / "split_2shot_seed1.json"
    split = load_split(split_file, labels)
    # the same split the adapt protocol draws, byte for byte
    assert split_file.read_bytes() == make_split(labels, 2, 1, class_names=["c0", "c1", "c2"],
                                                 n_classes=3).to_json_bytes()
    sha = split.sha256
    for r in records:
        assert r["split_sha256"] == sha
        assert r["n_train"] == 6 and r["n_val"] == 6 and r["n_test"] == 12
        assert r["steps"] == 3 and 0 <= r["best_step"] <= 3
        assert 0.0 <= r["accuracy"] <= 1.0 and r["peak_memory_mb"] >= 0
        assert (out / f"{r['method']}_2_1" / "adapter" / "fmlab_adapter.json").is_file()
        _check_reload(out / f"{r['method']}_2_1", npz, r)
    summary = (out / "summary.md").read_text()
    for m in CNN_METHODS:
        assert f"| {m} | 2 |" in summary


def test_trainable_parameters_follow_the_method(cnn_run):
    _, out = cnn_run
    rec = {r["method"]: r for r in json.loads((out / "results.json").read_text())}
    head = 64 * 3 + 3  # the new task head: Linear(64, 3)
    assert rec["linear"]["trainable_parameters"] == head
    assert rec["full"]["trainable_parameters"] == rec["full"]["total_parameters"]
    for m in ("bitfit", "lora", "svfit"):
        assert head < rec[m]["trainable_parameters"] < rec["full"]["trainable_parameters"]
    # PELA fine-tunes the whole compressed model, which is smaller than the original
    assert rec["pela"]["trainable_parameters"] == rec["pela"]["total_parameters"]
    assert rec["pela"]["total_parameters"] < rec["full"]["total_parameters"]
    assert rec["pela"]["distill_seconds"] > 0
    assert rec["lora"]["hyperparameters"]["options"] == {"r": 2}


def test_results_store_rows_carry_the_split_hash(cnn_run):
    _, out = cnn_run
    records = json.loads((out / "results.json").read_text())
    with sqlite3.connect(out / "fmlab.db") as con:
        rows = con.execute("SELECT method, metric, value, split_hash FROM results "
                           "WHERE task = 'finetune'").fetchall()
    got = {(m, metric): (v, h) for m, metric, v, h in rows}
    for r in records:
        for metric in ("accuracy", "val_accuracy", "trainable_parameters", "peak_memory_mb"):
            value, h = got[r["method"], metric]
            assert h == r["split_sha256"]
            assert value == pytest.approx(r[metric])


def test_vpt_on_a_vit(tmp_path):
    npz = make_npz(tmp_path / "tiny.npz", n_train=12, n_test=6, n_classes=2, hw=(16, 16))
    out = tmp_path / "out"
    rc = main(["finetune", "--backbone", "vit_tiny_cifar", "--data", f"npz:{npz}",
               "--method", "vpt", "--shots", "2", "--seeds", "3", "--option", "num_tokens=2",
               "--out", str(out), "--no-db", *FAST])
    assert rc == 0
    (r,) = json.loads((out / "results.json").read_text())
    assert r["trainable_parameters"] == 2 * 192 + (192 * 2 + 2)  # prompts + head
    _check_reload(out / "vpt_2_3", npz, r)


def test_training_lowers_the_loss(tmp_path):
    """A linear head on a fixed backbone: 24 steps lower the training loss."""
    npz = make_npz(tmp_path / "tiny.npz", n_train=24, n_test=6, n_classes=3, hw=(16, 16))
    out = tmp_path / "out"
    assert main(["finetune", "--backbone", "resnet20_cifar", "--data", f"npz:{npz}",
                 "--method", "linear", "--shots", "4", "--seeds", "1", "--out", str(out),
                 "--no-db", "--set", "trainer.max_steps=24", "--set", "trainer.batch_size=4",
                 "--set", "head_init=random", "--set", "augment=none",
                 "--set", "trainer.log_every=4", "--set", "eval_every_epochs=100"]) == 0
    hist = [json.loads(line) for line in (out / "linear_4_1" / "metrics.jsonl").open()]
    losses = [h["loss"] for h in hist if "loss" in h]
    assert losses[-1] < 0.8 * losses[0]


@pytest.mark.parametrize("args, message", [
    (["--method", "prefix", "--shots", "2"], "unknown method 'prefix'"),
    (["--method", "lora", "--shots", "9"], "has 8 train images"),
    (["--method", "vpt", "--shots", "2"], "vpt"),
    (["--method", "lora", "--shots", "2", "--option", "rank=3"], "unknown option 'rank'"),
    (["--method", "lora", "--shots", "2", "--set", "optim.lrr=1"], "unknown key 'optim.lrr'"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, args, message):
    npz = make_npz(tmp_path / "tiny.npz", n_train=16, n_test=4, n_classes=2, hw=(8, 8))
    rc = main(["finetune", "--backbone", "resnet20_cifar", "--data", f"npz:{npz}",
               "--seeds", "1", "--out", str(tmp_path / "out"), "--no-db", *args])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "out" / "results.json").exists()


def test_class_mean_head_uses_a_seeded_per_class_subset():
    import torch

    from fmlab.experiments.finetune_run import per_class_subset

    y = torch.as_tensor(np.repeat(np.arange(3), [10, 50, 4]))
    rows = per_class_subset(y, 8, seed=1)
    assert np.bincount(y[rows].numpy()).tolist() == [8, 8, 4]
    assert torch.equal(rows, per_class_subset(y, 8, seed=1))
    assert not torch.equal(rows, per_class_subset(y, 8, seed=2))
    assert torch.equal(per_class_subset(y, 0, seed=1), torch.arange(64))


def test_class_mean_head_ignores_a_common_feature_offset():
    """Post-ReLU features share a large common component; the head must classify by the class
    structure (centred means), not by the offset."""
    import torch
    from torch import nn

    from fmlab.experiments.finetune_run import init_head_class_means

    class Identity(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(8, 4)

        def encode(self, x):
            return x

    g = torch.Generator().manual_seed(0)
    y = torch.arange(200) % 4
    centres = torch.randn(4, 8, generator=g)
    X = 50.0 + centres[y] + 0.3 * torch.randn(200, 8, generator=g)  # offset 50 in every dim
    m = Identity()
    init_head_class_means(m, X, y, 4, 64)
    with torch.no_grad():
        acc = (m.head(X).argmax(1) == y).float().mean()
    assert acc > 0.95
