"""Issue 16 (MIM-VIT) through ``fmlab pretrain``: resume replays SatMAE++ / CroCo / iBOT runs
exactly, each masked objective draws its PNG, unknown keys exit 2 naming the key."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from fmlab.cli.main import main

from .conftest import CONFIG_DIR, resume_after_kill, smoke_args

MIM_VIT = ("satmae_eurosat", "croco_cifar10", "ibot_eurosat")


@pytest.mark.parametrize("name", MIM_VIT)
def test_resume_after_a_kill_is_bit_identical(name, npz_sources, tmp_path, capsys):
    straight = tmp_path / "straight"
    args = smoke_args(CONFIG_DIR / f"{name}.yaml", npz_sources["cifar10"], straight,
                      "trainer.checkpoint_every=2", "trainer.log_every=1", steps=4)
    assert main(args) == 0
    a, b = resume_after_kill(straight, tmp_path, capsys)
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize(("name", "panels"), [("satmae_eurosat", 5), ("croco_cifar10", 4),
                                              ("mae_eurosat", 3)])
def test_masked_objectives_draw_input_mask_and_reconstruction(name, panels, npz_sources,
                                                              tmp_path):
    out = tmp_path / "run"
    assert main(smoke_args(CONFIG_DIR / f"{name}.yaml", npz_sources["cifar10"], out)) == 0
    objective = json.loads((out / "encoder.json").read_text())["objective"]
    with Image.open(out / f"{objective}.png") as im:
        arr = np.asarray(im.convert("RGB"))
    # one column per panel: count the white gaps between columns on a row through the images
    row = arr[arr.shape[0] // 2]
    white = np.all(row == 255, axis=-1)
    columns = int(np.sum(white[1:] & ~white[:-1]))
    assert columns == panels
    assert arr.std() > 1.0  # not a blank canvas


def test_unknown_objective_key_exits_2_naming_it(npz_sources, tmp_path, capsys):
    args = smoke_args(CONFIG_DIR / "satmae_eurosat.yaml", npz_sources["cifar10"], tmp_path / "r",
                      "objective.scalez=[1,2]")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "objective.scalez" in err and "scales" in err and "Traceback" not in err
