"""Issue 16 (Selfie, SparK, spark_dense, SiT) through ``fmlab pretrain``: resume is exact, each
run draws its picture, ``--help`` lists the objectives, unknown keys exit 2, and the exported
encoder serves ``fmlab adapt``."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from fmlab.cli.main import main

from .conftest import CONFIG_DIR, kill_after_step_2, smoke_args

NAMES = ("selfie_cifar10", "spark_cifar10", "spark_dense_cifar10", "sit_cifar10")


@pytest.mark.parametrize("name", [
    "spark_cifar10",  # the sparse hooks must leave nothing behind between steps
    *(pytest.param(n, marks=pytest.mark.slow) for n in NAMES if n != "spark_cifar10")])
def test_resume_is_bit_identical_and_the_picture_is_written(name, npz_sources, tmp_path, capsys):
    src = npz_sources["cifar10"]
    straight = tmp_path / "straight"
    assert main(smoke_args(CONFIG_DIR / f"{name}.yaml", src, straight,
                           "trainer.checkpoint_every=2", "trainer.log_every=1", steps=4)) == 0
    crashed = tmp_path / "crashed"
    kill_after_step_2(straight, crashed)
    capsys.readouterr()
    assert main(["pretrain", "--resume", str(crashed)]) == 0
    assert "resumed from step 2" in capsys.readouterr().out
    a = load_file(str(straight / "encoder.safetensors"))
    b = load_file(str(crashed / "encoder.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    objective = name.rsplit("_", 1)[0]
    png = straight / f"{objective}.png"
    with Image.open(png) as im:  # 8 held-out images: 8 rows of 32 px tiles, 3-4 columns
        assert im.format == "PNG" and im.size[1] > 8 * 32 * 4 and im.size[0] > 3 * 32 * 4


def test_help_lists_the_objectives(capsys):
    with pytest.raises(SystemExit):
        main(["pretrain", "--help"])
    out = capsys.readouterr().out
    for name in ("selfie", "spark", "spark_dense", "sit", "mae", "simclr"):
        assert name in out


@pytest.mark.parametrize("key", ["objective.mask_ratoi=0.5", "augment.corupt_ratio=0.1"])
def test_unknown_keys_exit_2_naming_them(key, npz_sources, tmp_path, capsys):
    config = CONFIG_DIR / ("sit_cifar10.yaml" if "corupt" in key else "spark_cifar10.yaml")
    assert main(smoke_args(config, npz_sources["cifar10"], tmp_path / "r", key)) == 2
    err = capsys.readouterr().err
    assert key.split("=")[0].split(".")[1] in err and "Traceback" not in err


@pytest.mark.slow
def test_exported_selfie_resnet_serves_fmlab_adapt(npz_sources, tmp_path, capsys):
    src = npz_sources["cifar10"]
    run = tmp_path / "selfie"
    assert main(smoke_args(CONFIG_DIR / "selfie_cifar10.yaml", src, run)) == 0
    meta = json.loads((run / "encoder.json").read_text())
    assert meta["architecture"] == "resnet20_cifar" and meta["load_check"] == "ok"
    out = tmp_path / "adapt"
    assert main(["adapt", "--backbone", "resnet20_cifar", "--weights",
                 str(run / "encoder.safetensors"), "--data", f"npz:{src}", "--methods", "knn",
                 "--shots", "2", "--seeds", "1", "--out", str(out), "--no-db"]) == 0
    records = json.loads((out / "results.json").read_text())
    assert records and all(r["protocol"]["weights_sha256"] == meta["weights_sha256"]
                           for r in records)
