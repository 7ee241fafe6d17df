"""``torchrun --nproc_per_node 2 -m fmlab pretrain``: a 2-process gloo run on CPU."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fmlab.models import create_backbone

from .conftest import CONFIG_DIR, smoke_args

TORCHRUN = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))


@pytest.mark.slow  # two fresh interpreters importing torch: ~20-40 s on a busy 2-core machine
@pytest.mark.skipif(not Path(TORCHRUN).exists(), reason="torchrun not installed")
@pytest.mark.parametrize(("config", "extra", "arch", "objective", "dim"), [
    ("simclr_cifar10", (), "resnet20_cifar", "simclr", 64),
    ("multitask_cifar10", ("model.kwargs={embed_dim: 48, depth: 2, num_heads: 2}",),  # composite
     "vit_tiny_cifar", "composite", 48),
])
def test_torchrun_two_processes(config, extra, arch, objective, dim, npz_sources, tmp_path):
    out = tmp_path / "ddp"
    args = smoke_args(CONFIG_DIR / f"{config}.yaml", npz_sources["cifar10"], out,
                      "trainer.log_every=1", "trainer.device=cpu", *extra, steps=3)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([TORCHRUN, "--standalone", "--nproc_per_node", "2", "-m", "fmlab", *args],
                       capture_output=True, text=True, env=env, timeout=300,
                       cwd=Path(__file__).resolve().parents[2])
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count(f"pre-trained {arch} with {objective} to step 3/3") == 1  # rank 0 only
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [rec["loss"] for rec in records if "loss" in rec]
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))
    meta = json.loads((out / "encoder.json").read_text())
    assert meta["load_check"] == "ok"
    bb = create_backbone(meta["architecture"], weights=out / "encoder.safetensors", **meta["kwargs"])
    assert bb.feature_dim == dim
