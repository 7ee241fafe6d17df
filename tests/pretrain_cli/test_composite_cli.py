"""Composite configs through ``fmlab pretrain``: exact resume, per-term logs, errors that name
the term (exit 2)."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from safetensors.torch import load_file

from fmlab.cli.main import main

from .conftest import CONFIG_DIR, kill_after_step_2, smoke_args

MULTITASK = CONFIG_DIR / "multitask_cifar10.yaml"
SMALL_VIT = "model.kwargs={embed_dim: 48, depth: 2, num_heads: 2}"  # the shipped ViT is slow in bf16 on CPU


def test_multitask_trains_under_bf16_autocast(npz_sources, tmp_path):
    out = tmp_path / "run"
    assert main(smoke_args(MULTITASK, npz_sources["cifar10"], out, "trainer.bf16=true", SMALL_VIT)) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in records if "loss" in r)
    assert (out / "composite_mae.png").is_file()  # the MAE term draws its reconstruction


def test_resume_after_a_kill_is_bit_identical(npz_sources, tmp_path, capsys):
    straight = tmp_path / "straight"
    args = smoke_args(MULTITASK, npz_sources["cifar10"], straight, "trainer.checkpoint_every=2",
                      "trainer.log_every=1", "objective.weighting=uncertainty", SMALL_VIT, steps=4)
    assert main(args) == 0
    logs = [json.loads(line)["logs"] for line in (straight / "metrics.jsonl").read_text().splitlines()
            if '"logs"' in line]
    assert {"supervised_loss", "simclr_loss", "mae_loss", "mae_log_var", "supervised/acc"} <= set(logs[-1])
    crashed = kill_after_step_2(straight, tmp_path / "crashed")
    capsys.readouterr()
    assert main(["pretrain", "--resume", str(crashed)]) == 0
    assert "resumed from step 2" in capsys.readouterr().out
    a, b = load_file(str(straight / "encoder.safetensors")), load_file(str(crashed / "encoder.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda t: t[1].update(name="simclrr"), "objectives[1].name"),
    (lambda t: t[0].update(weight=-0.5), "objectives[0].weight"),
    (lambda t: t[1]["objective"].update(tempreature=0.1), "objectives[1].objective.tempreature"),
    (lambda t: t[2]["augment"].update(scales=[0.2, 1.0]), "objectives[2].augment.scales"),
    (lambda t: t[0].update(schedule="cosine"), "objectives[0].schedule"),
    (lambda t: t[0].update(name="composite"), "cannot be a term"),
])
def test_bad_terms_exit_2_naming_the_term(edit, message, npz_sources, tmp_path, capsys):
    cfg = yaml.safe_load(MULTITASK.read_text())
    edit(cfg["objectives"])
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(smoke_args(path, npz_sources["cifar10"], tmp_path / "run")) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_set_addresses_a_term_by_its_index(npz_sources, tmp_path, capsys):
    """``--set objectives.1.weight=...`` and a term's own keys; bad indices exit 2 naming them."""
    out = tmp_path / "run"
    assert main(smoke_args(MULTITASK, npz_sources["cifar10"], out, SMALL_VIT, "objectives.1.weight=0.25",
                           "objectives.2.objective.mask_ratio=0.5")) == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["objectives"][1]["weight"] == 0.25
    assert saved["objectives"][2]["objective"]["mask_ratio"] == 0.5
    for bad, message in (("objectives.3.weight=1", "index 0..2"),
                         ("objectives.2.objective.mask_ratio=abc", "objectives[2].objective.mask_ratio")):
        capsys.readouterr()
        assert main(smoke_args(MULTITASK, npz_sources["cifar10"], tmp_path / "bad", bad)) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
