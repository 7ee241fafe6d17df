"""A small results store and two run folders, built in the test (no data root needed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from fmlab.results import Protocol, ResultsStore

# accuracy of method m at shots k and seed s: known values, so means and stds are checkable
ACC = {("ncm", 1): [0.50, 0.52, 0.54], ("ncm", 4): [0.70, 0.71, 0.72],
       ("linear", 1): [0.40, 0.45, 0.50], ("linear", 4): [0.75, 0.77, 0.79]}
FID = {"hinge": [30.0, 32.0], "ns": [20.0, 26.0]}
RK = {"image_to_text": [0.2, 0.5, 0.7], "text_to_image": [0.1, 0.4, 0.6]}


def make_store(path: Path) -> Path:
    store = ResultsStore(path)
    p = Protocol.of("cifar10", "test", split_hash="abc123", views=0)
    recs = [{"method": m, "seed": s + 1, "shots": k, "accuracy": v}
            for (m, k), vals in ACC.items() for s, v in enumerate(vals)]
    store.record("adapt", p, recs, ("accuracy",), extra_keys=("shots",))
    store.record("gan", Protocol.of("mnist", "train"),
                 [{"method": m, "seed": s, "fid": v} for m, vals in FID.items() for s, v in enumerate(vals)],
                 ("fid",))
    store.record("clip_retrieval", Protocol.of("coco_mini", "val"),
                 [{"method": "clip_retrieval", "seed": 0, "metric": f"{d}_R@{k}", "value": RK[d][i]}
                  for d in RK for i, k in enumerate((1, 5, 10))])
    return path


def make_run(path: Path, lr: float, steps: int = 20) -> Path:
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(yaml.safe_dump({"optim": {"lr": lr}, "trainer": {"max_steps": steps}}))
    with open(path / "metrics.jsonl", "w") as f:
        for step in range(1, steps + 1):
            rec = {"step": step, "epoch": 0, "lr": lr, "loss": 2.0 / step / lr}
            if step % 10 == 0:
                rec["eval"] = {"fid": 50.0 / step, "kid": 0.1 / step}
            f.write(json.dumps(rec) + "\n")
        f.write('{"step": 21, "loss"')  # a line cut by a crash
    (path / "samples").mkdir()
    for step in (10, 20):
        Image.fromarray(np.full((16, 16, 3), step * 10, np.uint8)).save(path / "samples" / f"step_{step:06d}.png")
    return path


@pytest.fixture
def report_inputs(tmp_path):
    db = make_store(tmp_path / "fmlab.db")
    runs = tmp_path / "runs"
    make_run(runs / "gan_a", lr=0.1)
    make_run(runs / "gan_b", lr=0.2)
    return db, runs
