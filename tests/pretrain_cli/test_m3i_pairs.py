"""M3I's pairs term through `fmlab pretrain`: an image-text csv source feeds it, the term is
logged, and a run killed after step 2 resumes bit-identically (its draws come from the RNG the
checkpoint restores)."""

from __future__ import annotations

import csv
import json

import numpy as np
import torch
from PIL import Image

from fmlab.cli.main import main

from .conftest import CONFIG_DIR, resume_after_kill, smoke_args

CONFIG = CONFIG_DIR / "m3i_cifar10.yaml"


def _pairs_csv(folder) -> str:
    folder.mkdir()
    rng = np.random.default_rng(0)
    with open(folder / "pairs.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "caption"])
        for i in range(5):
            Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(folder / f"{i}.png")
            for c in ("a red thing", f"picture number {i}"):
                w.writerow([f"{i}.png", c])
    return f"csv:{folder / 'pairs.csv'}"


def test_pairs_term_runs_logs_and_resumes_bit_identically(npz_sources, tmp_path, capsys):
    straight = tmp_path / "straight"
    args = smoke_args(CONFIG, npz_sources["cifar10"], straight, f"objective.pairs={_pairs_csv(tmp_path / 'p')}",
                      "objective.pairs_weight=1.0", "objective.pairs_batch=4",
                      "trainer.checkpoint_every=2", "trainer.log_every=1", steps=4)
    assert main(args) == 0
    logged = [json.loads(line) for line in (straight / "metrics.jsonl").read_text().splitlines()]
    assert all("loss_pairs" in r["logs"] for r in logged if "loss" in r)
    a, b = resume_after_kill(straight, tmp_path, capsys)
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_pairs_from_an_image_source_exit_2(npz_sources, tmp_path, capsys):
    args = smoke_args(CONFIG, npz_sources["cifar10"], tmp_path / "run", "objective.pairs=cifar10_demo",
                      "objective.pairs_weight=1.0")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "objective.pairs" in err and "Traceback" not in err
