"""Regressions of issue 27 for ``fmlab finetune``: one backbone key in the results store, the
``max_steps=0`` / zero-learning-rate cases (probe F12 ft-07), and the help text (probe obs. c)."""

from __future__ import annotations

import json
import sqlite3

import pytest
import yaml

from fmlab.cli.main import main
from tests.conftest import make_npz

TINY = ["--set", "trainer.max_steps=2", "--set", "trainer.batch_size=4"]


def _finetune(npz, out, *extra):
    return main(["finetune", "--backbone", "resnet20_cifar", "--data", f"npz:{npz}",
                 "--method", "linear", "--shots", "2", "--seeds", "1", "--out", str(out), *extra])


def test_adapt_and_finetune_store_the_same_backbone_key(tmp_path):
    """``resnet_cifar`` is an alias: both commands must store the resolved name."""
    from fmlab.models import create_backbone

    npz = make_npz(tmp_path / "tiny.npz", n_train=24, n_test=8, n_classes=3, hw=(16, 16))
    db = tmp_path / "r.db"
    assert main(["adapt", "--backbone", "resnet_cifar", "--data", f"npz:{npz}", "--methods", "ncm",
                 "--shots", "2", "--seeds", "1", "--out", str(tmp_path / "ad"),
                 "--db", str(db)]) == 0
    assert main(["finetune", "--backbone", "resnet_cifar", "--data", f"npz:{npz}",
                 "--method", "linear", "--shots", "2", "--seeds", "1",
                 "--out", str(tmp_path / "ft"), "--db", str(db), *TINY]) == 0
    with sqlite3.connect(db) as con:
        keys = dict(con.execute("SELECT DISTINCT task, backbone FROM results").fetchall())
    assert keys == {"adapt": create_backbone("resnet_cifar").name,
                    "finetune": create_backbone("resnet_cifar").name}
    proto = json.loads((tmp_path / "ft" / "results.json").read_text())[0]["protocol"]
    assert proto["backbone"] == keys["finetune"]


def test_max_steps_0_trains_the_configured_epochs(tmp_path):
    """``trainer.max_steps=0`` is the engine's "train trainer.epochs epochs": it trains (6 images,
    batch 6: one step per epoch), so the reported state is not an untrained head by construction."""
    npz = make_npz(tmp_path / "tiny.npz", n_train=24, n_test=8, n_classes=3, hw=(16, 16))
    out = tmp_path / "out"
    assert _finetune(npz, out, "--no-db", "--set", "trainer.max_steps=0",
                     "--set", "trainer.epochs=3") == 0
    rec = json.loads((out / "results.json").read_text())[0]
    cfg = yaml.safe_load((out / "linear_2_1" / "config.yaml").read_text())
    assert cfg["trainer"]["max_steps"] == 0 and cfg["trainer"]["batch_size"] == 6
    assert rec["steps"] == 3 * (rec["n_train"] // 6)


@pytest.mark.parametrize("sets", [["optim.lr=0"], ["optim.lr=0", "trainer.max_steps=0"]])
def test_a_run_that_trains_nothing_is_refused(tmp_path, capsys, sets):
    """A zero learning rate (with no floor) leaves every weight where it started: exit 2, one
    line naming the key, nothing written."""
    npz = make_npz(tmp_path / "tiny.npz", n_train=24, n_test=8, n_classes=3, hw=(16, 16))
    args = [a for s in sets for a in ("--set", s)]
    rc = _finetune(npz, tmp_path / "out", "--no-db", *args)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "optim.lr" in err, err
    assert not (tmp_path / "out" / "results.json").exists()


def test_help_prints_percent_signs_once(capsys):
    with pytest.raises(SystemExit):
        main(["finetune", "--help"])
    out = capsys.readouterr().out
    assert "10% warmup" in out and "%%" not in out



@pytest.mark.parametrize("what, trains_stats", [("full", True), ("factors", False)])
def test_pela_hook_decides_what_trains_and_the_bn_policy(what, trains_stats):
    """PELA's prepare hook (the workflow has no name check): ``pela_finetune=full`` makes the whole
    compressed model trainable and asks for BatchNorm statistics to follow; ``factors`` trains
    the factors and the head only and keeps the base's statistics."""
    import torch

    import fmlab.peft as fp
    from fmlab.experiments.finetune import build_base
    from fmlab.experiments.finetune_settings import resolve_settings
    from fmlab.peft.recipe import FinetuneContext

    s = resolve_settings("pela", 10, ["distill_steps=0", f"pela_finetune={what}"])
    model = build_base("resnet20_cifar", None, 3)
    ctx = FinetuneContext(settings=s, device=torch.device("cpu"), head="head")
    got = fp.METHODS.get("pela").prepare_finetune(
        model, lambda m: fp.apply(m, "pela", head="head"), ctx)
    assert got is trains_stats
    all_params = sum(p.numel() for p in model.parameters())
    factors_and_head = sum(p.numel() for pair in fp.pela_layers(model).values()
                           for p in pair.parameters()) + 64 * 3 + 3
    expected = all_params if what == "full" else factors_and_head
    assert fp.trainable_parameters(model) == expected
