"""``torchrun --nproc_per_node 2 -m fmlab gan train``: the engine's data parallelism, no GAN code."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fmlab.engine.logger import read_metrics

TORCHRUN = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))


@pytest.mark.slow  # two fresh interpreters importing torch: ~20-40 s on a busy 2-core machine
@pytest.mark.skipif(not Path(TORCHRUN).exists(), reason="torchrun not installed")
def test_gan_train_under_torchrun_two_processes(tmp_path, write_config):
    cfg = write_config(samples={"every": 2}, eval={"every": 0, "final": True})
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([TORCHRUN, "--standalone", "--nproc_per_node", "2", "-m", "fmlab", "gan",
                        "train", "--config", str(cfg), "--out", str(out), "--no-db",
                        "--set", "trainer.max_steps=4", "--set", "trainer.log_every=1",
                        "--set", "trainer.checkpoint_every=2", "--set", "trainer.device=cpu"],
                       capture_output=True, text=True, env=env, timeout=300,
                       cwd=Path(__file__).resolve().parents[2])
    assert r.returncode == 0, r.stderr[-3000:]
    assert "to step 4/4" in r.stdout
    records = read_metrics(out)
    steps = [rec["step"] for rec in records if "logs" in rec]
    assert steps == [1, 2, 3, 4]  # one line per step: rank 0 writes, the means are over ranks
    assert [rec["step"] for rec in records if "eval" in rec] == [4]
    assert json.loads((out / "checkpoints" / "latest.json").read_text())["step"] == 4
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["step_000002.png",
                                                                  "step_000004.png"]
    g = load_file(str(out / "generator.safetensors"))
    assert all(torch.isfinite(v).all() for v in g.values() if v.is_floating_point())
