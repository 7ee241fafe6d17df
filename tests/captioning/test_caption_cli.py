"""``fmlab caption train | eval | attack`` end to end on a tiny npz (no FMLAB_DATA needed): the
three stages with ``trainer.max_steps=2``, a bit-identical resume of the CgT-GAN stage after a
kill, the eval and attack outputs, and bad input refused with exit 2 naming the key."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fmlab.cli.main import main
from tests.conftest import make_npz

pytestmark = pytest.mark.usefixtures("one_thread")

DATA = ["data.clip_images=40", "data.train_images=40", "data.corpus_captions=40", "data.lm_captions=40",
        "data.test_images=30", "trainer.batch_size=8", "trainer.progress=false", "clip_model.width=4",
        "clip_model.dim=8", "captioner.hidden=16", "captioner.embed=8", "trainer.log_every=1"]


CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "caption"


def _train(npz, out, *sets):
    stage = next(s.split("=")[1] for s in sets if s.startswith("stage="))
    config = CONFIGS / {"clip": "clip_mnist.yaml", "lm": "lm_mnist.yaml"}.get(stage, "cgt_clip_cos.yaml")
    args = ["caption", "train", "--config", str(config), "--out", str(out), "--set", f"data.source=npz:{npz}"]
    for s in [*DATA, *sets]:
        args += ["--set", s]
    return main(args)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("caption")
    npz = make_npz(tmp / "d.npz", n_train=200, n_test=40, n_classes=10, hw=(16, 16), channels=None)
    assert _train(npz, tmp / "clip", "stage=clip", "trainer.max_steps=2") == 0
    assert _train(npz, tmp / "lm", "stage=lm", f"clip={tmp / 'clip'}", "trainer.max_steps=2") == 0
    cgt = ["stage=cgt", f"clip={tmp / 'clip'}", "reward.lam=0.7", "reward.warmup_steps=1",
           "trainer.max_steps=4", "trainer.checkpoint_every=2"]
    assert _train(npz, tmp / "cgt", *cgt) == 0
    return tmp, npz, cgt


def test_resume_of_cgt_after_a_kill_is_bit_identical(runs):
    tmp, _, _ = runs
    straight, crashed = tmp / "cgt", tmp / "crashed"
    shutil.copytree(straight, crashed)
    for f in ("captioner.safetensors", "captioner.json"):
        (crashed / f).unlink()
    pointer = crashed / "checkpoints" / "latest.json"
    info = json.loads(pointer.read_text())
    pointer.write_text(json.dumps({k: (v.replace("00000004", "00000002") if isinstance(v, str) else v)
                                   for k, v in info.items()} | {"step": 2}))
    assert main(["caption", "train", "--resume", str(crashed)]) == 0
    a, b = load_file(str(straight / "captioner.safetensors")), load_file(str(crashed / "captioner.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((crashed / "captioner.json").read_text())["step"] == 4


def test_eval_and_attack_write_their_outputs(runs, capsys):
    tmp, _, _ = runs
    out = tmp / "eval.json"
    assert main(["caption", "eval", "--model", str(tmp / "cgt"), "--lm", str(tmp / "lm"), "--json", str(out),
                 "--sheet", str(tmp / "sheet.png")]) == 0
    res = json.loads(out.read_text())
    assert res["images"] == 30 and 0 <= res["bleu4"] <= 1 and res["perplexity"] >= 1
    assert 0 <= res["digit_acc"] <= 1 and (tmp / "sheet.png").is_file()
    att = tmp / "attack"
    args = ["caption", "attack", "--out", str(att)]
    for s in (f"victim={tmp / 'cgt'}", f"transfer={tmp / 'cgt'}", "eps=[0.1, 0.3]", "images=10", "steps=3",
              "generator.steps=2", "generator.images=16", "generator.batch_size=8", "generator.width=4",
              "target_digit=3"):
        args += ["--set", s]
    assert main(args) == 0
    res = json.loads((att / "attack.json").read_text())
    assert len(res["per_image"]) == 4 and all(r["linf"] <= torch.tensor(r["eps"]).item() for r in res["per_image"])  # float32 ε
    assert res["generator"]["linf"] <= torch.tensor(0.2).item() and "transfer_digit" in res["per_image"][0]
    assert (att / "success_vs_eps.png").is_file() and (att / "attacked.png").is_file()


@pytest.mark.parametrize("bad, named", [("reward.semantic=clip_foo", "clip_foo"),
                                        ("data.corpus_captions=0", "data.corpus_captions"),
                                        ("stage=decode", "stage")])
def test_bad_input_exits_2_naming_it(runs, bad, named, capsys):
    tmp, npz, cgt = runs
    capsys.readouterr()
    assert _train(npz, tmp / f"bad_{named}", *cgt, bad) == 2
    err = capsys.readouterr().err
    assert named in err and "Traceback" not in err


def test_a_cgt_run_needs_a_clip_run(runs, capsys):
    tmp, npz, _ = runs
    assert _train(npz, tmp / "noclip", "stage=cgt", f"clip={tmp / 'lm'}") == 2
    assert "clip.json" in capsys.readouterr().err
