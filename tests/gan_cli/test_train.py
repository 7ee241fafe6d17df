"""``fmlab gan train``: outputs of a smoke run, exact resume, data selection, config errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from fmlab.cli.main import main
from fmlab.engine.logger import read_metrics
from fmlab.experiments.gan_data import select_training_indices
from fmlab.gan.io import load_generator
from fmlab.results import ResultsStore


def _train(config, out, *sets, resume=False) -> int:
    # one --config/--out/--resume policy for every command: a resumed run reads its own config.yaml
    args = ["gan", "train"] + (["--resume", str(out)] if resume else ["--config", str(config), "--out", str(out)])
    for s in sets:
        args += ["--set", s]
    return main(args)


def test_smoke_run_writes_every_output(tmp_path, write_config, capsys):
    cfg = write_config(data={"conditional": True}, model={"cond": "adc"},
                       eval={"metrics": ["fid", "kid", "prdc", "ifid"]})
    run = tmp_path / "run"
    assert _train(cfg, run) == 0
    assert "to step 20/20" in capsys.readouterr().out

    pointer = json.loads((run / "checkpoints" / "latest.json").read_text())
    assert pointer["step"] == 20
    assert (run / "checkpoints" / "step-00000010.safetensors").is_file()
    for step in (10, 20):
        png = Image.open(run / "samples" / f"step_{step:06d}.png")
        # 16 samples of a 10-class G: one class per column → 10 columns, 2 rows of 16+2 px
        assert png.size == (10 * 18 + 2, 2 * 18 + 2)

    records = read_metrics(run)
    train_steps = [r["step"] for r in records if "logs" in r]
    assert train_steps == [5, 10, 15, 20]
    assert all({"d_loss", "g_loss", "d_cond", "g_cond"} <= set(r["logs"]) for r in records
               if "logs" in r)
    evals = [r for r in records if "eval" in r]
    assert [r["step"] for r in evals] == [10, 20]
    assert {"fid", "kid", "precision", "recall", "ifid", "class_recall"} <= set(evals[0]["eval"])

    rows = ResultsStore(run / "fmlab.db").query(task="gan")
    fid_rows = [r for r in rows if r["metric"] == "fid"]
    assert [json.loads(r["extra"])["step"] for r in fid_rows] == [10, 20]
    assert fid_rows[-1]["value"] == pytest.approx(evals[-1]["eval"]["fid"])
    assert {r["method"] for r in rows} == {"tiny"} and len({r["run_id"] for r in rows}) == 1

    info = json.loads((run / "generator.json").read_text())
    assert info["arch"] == "dcgan" and info["ema"] is True and info["step"] == 20
    assert info["kwargs"]["num_classes"] == 10
    # the exported generator is the checkpoint's EMA copy, rebuilt from arch + kwargs alone
    G, _ = load_generator(run)
    ckpt = load_file(str(run / "checkpoints" / "step-00000020.safetensors"))
    for k, v in G.state_dict().items():
        assert torch.equal(v, ckpt[f"G_ema.module.{k}"]), k


def _checkpoint(run, step):
    weights = load_file(str(run / "checkpoints" / f"step-{step:08d}.safetensors"))
    state = torch.load(run / "checkpoints" / f"step-{step:08d}.state.pt", weights_only=True)
    return weights, state


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


@pytest.mark.parametrize("extra", [
    # grids and metrics every 10 steps: side outputs must not disturb the training streams
    {"gan": {"diffaug": "color,translation,cutout"}},
    {"data": {"conditional": True}, "model": {"cond": "ac"},
     "gan": {"adaptivemix": True, "lecam_lambda": 0.3, "lecam_start": 5},
     "samples": {"every": 0}, "eval": {"every": 0, "final": False}},
], ids=["diffaug", "ac-adaptivemix-lecam"])
def test_resume_equals_straight_run_bit_for_bit(tmp_path, write_config, extra):
    cfg = write_config(**extra)
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert _train(cfg, straight) == 0
    assert _train(cfg, split, "trainer.max_steps=10") == 0
    assert _train(cfg, split, "trainer.max_steps=20", resume=True) == 0

    w1, s1 = _checkpoint(straight, 20)
    w2, s2 = _checkpoint(split, 20)
    assert w1.keys() == w2.keys()
    assert {k for k in w1 if not torch.equal(w1[k], w2[k])} == set()
    # G, D, EMA-G are the weights; the GAN state (step, LeCam anchors) is the objective's extra state
    for key in ("optimizer_g", "optimizer_d", "model_extra"):
        assert _same(s1[key], s2[key]), key
    logs1 = [r["logs"] for r in read_metrics(straight) if "logs" in r]
    logs2 = [r["logs"] for r in read_metrics(split) if "logs" in r]
    assert logs1 == logs2 and len(logs1) == 4
    g1 = load_file(str(straight / "generator.safetensors"))
    g2 = load_file(str(split / "generator.safetensors"))
    assert all(torch.equal(g1[k], g2[k]) for k in g1)


def test_resume_refuses_a_different_data_selection(tmp_path, write_config, capsys):
    cfg = write_config(samples={"every": 0}, eval={"every": 0, "final": False})
    run = tmp_path / "run"
    assert _train(cfg, run, "trainer.max_steps=10") == 0
    capsys.readouterr()
    assert _train(cfg, run, "trainer.max_steps=20", "data.limit=48", resume=True) == 2
    err = capsys.readouterr().err.strip()
    assert "keep data.limit / data.fraction" in err and len(err.splitlines()) == 1
    # starting over in a directory that holds a run needs --resume
    assert _train(cfg, run) == 2
    assert "already holds a run" in capsys.readouterr().err


def test_limit_and_fraction_select_seeded_class_balanced_subsets():
    labels = np.repeat(np.arange(4), [30, 50, 20, 100])  # unbalanced classes, 200 images
    first = select_training_indices(200, labels, limit=120)
    assert np.array_equal(first, np.arange(120))

    idx = select_training_indices(200, labels, fraction=0.2, seed=3)
    # 10 per class (0.2 · 200 / 4), drawn inside each class, reproducible and seed-dependent
    assert np.bincount(labels[idx]).tolist() == [10, 10, 10, 10]
    assert len(np.unique(idx)) == 40 and np.all(np.diff(idx) > 0)
    assert np.array_equal(idx, select_training_indices(200, labels, fraction=0.2, seed=3))
    assert not np.array_equal(idx, select_training_indices(200, labels, fraction=0.2, seed=4))
    # limit first, then the fraction of what is left; a class smaller than its share gives all
    both = select_training_indices(200, labels, limit=100, fraction=0.5, seed=0)
    assert both.max() < 100
    # the first 100 hold classes 0, 1, 2 (30, 50, 20 images): round(0.5 · 100 / 3) = 17 each
    assert np.bincount(labels[both]).tolist() == [17, 17, 17]
    small = select_training_indices(200, labels, fraction=0.9, seed=0)  # share 45 > 30, 20
    assert np.bincount(labels[small]).tolist() == [30, 45, 20, 45]
    unlabelled = select_training_indices(200, None, fraction=0.1, seed=0)
    assert len(unlabelled) == 20


def test_config_typos_fail_naming_the_key(tmp_path, write_config, capsys):
    cfg = write_config(trainer={"max_stepz": 5})
    assert _train(cfg, tmp_path / "a") == 2
    err = capsys.readouterr().err.strip()
    assert "unknown key 'trainer.max_stepz'" in err and "did you mean 'trainer.max_steps'" in err
    assert len(err.splitlines()) == 1

    good = write_config("good.yaml")
    assert _train(good, tmp_path / "b", "gan.diffaugment=color") == 2
    assert "unknown key 'gan.diffaugment'" in capsys.readouterr().err
    assert _train(good, tmp_path / "c", "trainer.accumulate=2") == 2
    assert "trainer.accumulate" in capsys.readouterr().err
    assert _train(good, tmp_path / "d", "data.fraction=1.5") == 2
    assert "data.fraction: 1.5 must lie in (0, 1]" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_bf16_autocast_trains_float32_weights_close_to_the_float32_run(tmp_path, write_config):
    """trainer.bf16 puts the step under bfloat16 autocast (≈1.8× the steps per CPU-second on an
    AVX512-BF16 CPU, benchmarks/gan_step.py); weights, optimiser state and EMA stay fp32."""
    cfg = write_config(samples={"every": 0}, eval={"every": 0, "final": False})
    fp32, bf16 = tmp_path / "fp32", tmp_path / "bf16"
    assert _train(cfg, fp32, "trainer.max_steps=5") == 0
    assert _train(cfg, bf16, "trainer.max_steps=5", "trainer.bf16=true") == 0
    w32, _ = _checkpoint(fp32, 5)
    w16, _ = _checkpoint(bf16, 5)
    assert all(v.dtype == torch.float32 for v in w16.values() if v.is_floating_point())
    l32 = [r["logs"] for r in read_metrics(fp32) if "logs" in r][0]
    l16 = [r["logs"] for r in read_metrics(bf16) if "logs" in r][0]
    # autocast really ran (the runs differ) but computed the same losses to bf16 precision
    assert any(not torch.equal(w32[k], w16[k]) for k in w32)
    for key in ("d_loss", "g_loss"):
        assert l16[key] == pytest.approx(l32[key], rel=0.05, abs=0.02), key


def test_resume_completes_a_final_evaluation_killed_after_the_final_checkpoint(tmp_path, write_config):
    """Probe F3: SIGKILL during the final evaluation (after the final checkpoint) used to leave
    the run without it for good; --resume now runs it, and the weights stay the same."""
    cfg = write_config(samples={"every": 0}, eval={"every": 0})
    run = tmp_path / "run"
    assert _train(cfg, run) == 0
    g_before = load_file(str(run / "generator.safetensors"))
    metrics = run / "metrics.jsonl"
    lines = metrics.read_text().splitlines()
    kept = [ln for ln in lines if "eval" not in json.loads(ln)]
    assert len(kept) == len(lines) - 1  # exactly the final evaluation is dropped
    metrics.write_text("".join(ln + "\n" for ln in kept))
    (run / "generator.safetensors").unlink()  # the kill came before the export, too

    assert _train(cfg, run, resume=True) == 0
    evals = [r for r in read_metrics(run) if "eval" in r]
    assert [r["step"] for r in evals] == [20]
    g_after = load_file(str(run / "generator.safetensors"))
    assert g_before.keys() == g_after.keys() and all(torch.equal(g_before[k], g_after[k])
                                                     for k in g_before)
    # resuming the finished run again evaluates nothing more
    assert _train(cfg, run, resume=True) == 0
    assert [r["step"] for r in read_metrics(run) if "eval" in r] == [20]


def test_no_db_writes_no_results_store(tmp_path, write_config):
    """Probe F4: ``--no-db`` used to write RUN_DIR/fmlab.db anyway."""
    cfg = write_config(samples={"every": 0}, eval={"every": 0})
    run = tmp_path / "run"
    assert main(["gan", "train", "--config", str(cfg), "--out", str(run), "--no-db",
                 "--set", "trainer.max_steps=5"]) == 0
    assert any("eval" in r for r in read_metrics(run))  # it evaluated, and stored nothing
    assert not (run / "fmlab.db").exists()


def test_cpu_budget_stops_the_run_and_resume_keeps_the_budget(tmp_path, write_config, capsys):
    cfg = write_config(samples={"every": 0}, eval={"every": 0, "final": False})
    run = tmp_path / "run"
    assert _train(cfg, run, "cpu_minutes=1e-9") == 0  # spent by the first step
    assert "to step 1/20 (CPU budget reached)" in capsys.readouterr().out
    _, state = _checkpoint(run, 1)
    used = state["callbacks"]["cpu_budget"]["train_cpu_s"]
    assert used > 0
    assert _train(cfg, run, "cpu_minutes=1e-9", resume=True) == 0  # budget spent: no step
    assert "to step 1/20 (resumed from step 1) (CPU budget reached)" in capsys.readouterr().out
    assert _checkpoint(run, 1)[1]["callbacks"]["cpu_budget"]["train_cpu_s"] == used
