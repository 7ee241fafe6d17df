"""``fmlab diffusion train | sample | transfer`` end to end on a tiny 28×28 npz source."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.torch import load_file

from fmlab.experiments.diffusion_transfer import matched_scratch_width

from fmlab.cli.main import main
from fmlab.gan.io import load_fake_npz
from tests.conftest import make_npz

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def setup(tmp_path):
    data = make_npz(tmp_path / "d.npz", n_train=48, n_test=8, n_classes=4, hw=(28, 28),
                    channels=None)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"""
name: tiny
data: {{source: "npz:{data}", classes: [0, 1]}}
model: {{layers: kind, ch: 8, learngenes: 2, tailors: 1}}
diffusion: {{schedule: linear, steps: 10}}
samples: {{n: 4, steps: 2}}
trainer: {{max_steps: 4, batch_size: 8, checkpoint_every: 2, progress: false, tensorboard: false,
          log_every: 2}}
schedule: {{name: constant}}
""", encoding="utf-8")
    return tmp_path, cfg


def _train(cfg, out, *sets, resume=False):
    args = ["diffusion", "train", "--out", str(out)]
    args += ["--resume"] if resume else ["--config", str(cfg)]
    for s in sets:
        args += ["--set", s]
    return main(args)


def test_train_sample_and_transfer(setup, capsys):
    tmp, cfg = setup
    run = tmp / "run"
    assert _train(cfg, run) == 0
    assert (run / "model.safetensors").is_file() and (run / "samples.png").is_file()
    assert main(["diffusion", "sample", "--model", str(run), "--n", "6", "--steps", "2",
                 "--out", str(tmp / "g.png"), "--npz", str(tmp / "s.npz")]) == 0
    images, labels = load_fake_npz(tmp / "s.npz")
    assert images.shape == (6, 28, 28) and images.dtype == np.uint8
    assert labels.tolist() == [0, 1, 0, 1, 0, 1]
    counts = {}
    for method in ("learngene", "lora", "scratch", "scratch_matched"):
        out = tmp / method
        assert main(["diffusion", "transfer", "--from", str(run), "--config", str(cfg),
                     "--method", method, "--out", str(out), "--set", "data.classes=[2,3]",
                     "--set", "trainer.max_steps=2"]) == 0
        meta = json.loads((out / "model.json").read_text())
        assert meta["classes"] == [2, 3] and meta["method"] == method
        counts[method] = meta["trainable"]
    assert meta["source_classes"] == [0, 1]
    assert abs(counts["lora"] - counts["learngene"]) / counts["learngene"] < 0.10
    assert counts["scratch"] > counts["learngene"]
    assert meta["layers"] == "dense" and meta["trainable"] == meta["total"]  # scratch_matched
    assert meta["ch"] == matched_scratch_width(2, counts["learngene"])  # tiny: 4 → 7,925 vs 5,238
    assert main(["diffusion", "sample", "--model", str(tmp / "scratch_matched"), "--n", "2",
                 "--steps", "1", "--out", str(tmp / "m.png")]) == 0   # its width reloads
    assert main(["diffusion", "sample", "--model", str(tmp / "lora"), "--n", "2", "--steps", "1",
                 "--out", str(tmp / "l.png"), "--npz", str(tmp / "l.npz")]) == 0
    assert load_fake_npz(tmp / "l.npz")[1].tolist() == [2, 3]   # original class ids
    assert "LoRA rank" in capsys.readouterr().out


def test_resume_is_bit_identical(setup):
    tmp, cfg = setup
    assert _train(cfg, tmp / "full") == 0
    assert _train(cfg, tmp / "half", "trainer.max_steps=2") == 0
    assert _train(cfg, tmp / "half", "trainer.max_steps=4", resume=True) == 0
    a, b = load_file(tmp / "full" / "model.safetensors"), load_file(tmp / "half" / "model.safetensors")
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)


@pytest.mark.parametrize("sets, needle", [
    (["model.learngens=3"], "model.learngens"),
    (["data.classes=[0,7]"], "data.classes"),
    (["model.layers=conv"], "model.layers"),
    (["diffusion.schedule=quad"], "diffusion.schedule"),
])
def test_bad_config_is_one_error_naming_the_key(setup, capsys, sets, needle):
    tmp, cfg = setup
    assert _train(cfg, tmp / "bad", *sets) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_bad_transfer_and_sample_inputs(setup, capsys):
    tmp, cfg = setup
    assert main(["diffusion", "transfer", "--config", str(cfg), "--out", str(tmp / "x"),
                 "--method", "learngene"]) == 2
    assert "--from" in capsys.readouterr().err
    assert main(["diffusion", "transfer", "--from", str(tmp), "--config", str(cfg),
                 "--method", "lora", "--out", str(tmp / "y")]) == 2
    assert "model.json" in capsys.readouterr().err
    assert main(["diffusion", "sample", "--model", str(tmp / "nope"), "--out",
                 str(tmp / "z.png")]) == 2
    assert "model.json" in capsys.readouterr().err


def test_lora_transfer_resume_is_bit_identical(setup):
    tmp, cfg = setup
    assert _train(cfg, tmp / "src", "trainer.max_steps=2") == 0

    def transfer(out, steps):
        return main(["diffusion", "transfer", "--from", str(tmp / "src"), "--config", str(cfg),
                     "--method", "lora", "--out", str(out), "--set", "data.classes=[2,3]",
                     "--set", f"trainer.max_steps={steps}"])

    assert transfer(tmp / "full", 4) == 0
    assert transfer(tmp / "half", 2) == 0
    assert main(["diffusion", "transfer", "--resume", str(tmp / "half"),
                 "--set", "trainer.max_steps=4"]) == 0
    a, b = load_file(tmp / "full" / "model.safetensors"), load_file(tmp / "half" / "model.safetensors")
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)
