"""Probe fixes in the engine's writers and readers: non-finite exports (F1), latest.json names
(F18), a symlinked metrics.jsonl (F17), output modes of safetensors files, pickled code."""

from __future__ import annotations

import pathlib
import json
import os
import stat

import pytest
import torch
from torch import nn

from fmlab.engine import TensorSource, Trainer, TrainerConfig
from fmlab.engine.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint, save_weights
from fmlab.engine.logger import MetricsLogger
from fmlab.errors import DataError, FmlabError

from ._objectives import TinyObjective, blobs


def test_save_weights_refuses_non_finite_tensors_and_writes_nothing(tmp_path):
    m = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    with torch.no_grad():
        m[1].bias.fill_(float("inf"))
    path = tmp_path / "w.safetensors"
    with pytest.raises(FmlabError, match=r"w\.safetensors.*non-finite.*'1\.bias'"):
        save_weights(m, path)
    assert not path.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "..", "sub/step.pt"])
def test_latest_json_names_must_stay_in_the_checkpoint_folder(tmp_path, name):
    save_checkpoint(tmp_path, 1, nn.Linear(2, 2), {"x": 1})
    pointer = tmp_path / "checkpoints" / "latest.json"
    info = json.loads(pointer.read_text())
    pointer.write_text(json.dumps({**info, "state": name}))
    with pytest.raises(DataError, match="latest.json.*refusing checkpoint file name"):
        latest_checkpoint(tmp_path)


def test_metrics_log_refuses_a_symlink(tmp_path):
    target = tmp_path / "elsewhere.txt"
    target.write_text("keep\n")
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").symlink_to(target)
    with pytest.raises(DataError, match="metrics.jsonl.*symbolic link"):
        MetricsLogger(run, tensorboard=False)
    assert target.read_text() == "keep\n"


def test_safetensors_outputs_get_the_umask_mode_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        path = save_weights(nn.Linear(2, 2), tmp_path / "w.safetensors")
        ref = save_checkpoint(tmp_path, 3, nn.Linear(2, 2), {"x": 1})
    finally:
        os.umask(old)
    for p in (path, ref.weights, ref.state):
        assert stat.S_IMODE(p.stat().st_mode) == 0o644, p


def test_checkpoint_state_with_pickled_code_is_refused_in_one_line(tmp_path):
    x, y = blobs(32)
    cfg = TrainerConfig(max_steps=2, batch_size=8, device="cpu", progress=False, tensorboard=False)
    Trainer(TinyObjective(), TensorSource(x, y), cfg, run_dir=tmp_path).fit()
    ref = latest_checkpoint(tmp_path)
    torch.save({"step": 2, "f": pathlib.PurePosixPath("x")}, ref.state)  # pickled code, not data
    with pytest.raises(DataError) as e:
        load_checkpoint(ref, TinyObjective())
    assert str(ref.state) in str(e.value) and len(str(e.value).splitlines()) == 1


def test_safetensors_files_are_byte_identical_across_processes(tmp_path):
    """The safetensors writer orders its header by hash map, so the same weights gave files with
    different sha256 from one process to the next (weights_sha256 keys results and caches)."""
    import hashlib
    import subprocess
    import sys

    code = ("import sys, torch; from torch import nn; from fmlab.engine.checkpoint import save_weights;"
            "torch.manual_seed(0); save_weights(nn.Linear(3, 2), sys.argv[1],"
            " {'step': '3', 'writer': 'w', 'b': '1', 'zz': '2', 'note': 'x'})")
    digests = set()
    for i in range(4):
        out = tmp_path / f"{i}.safetensors"
        subprocess.run([sys.executable, "-c", code, str(out)], check=True)
        digests.add(hashlib.sha256(out.read_bytes()).hexdigest())
    assert len(digests) == 1
    from safetensors import safe_open

    with safe_open(str(out), "pt") as f:
        assert f.metadata() == {"step": "3", "writer": "w", "b": "1", "zz": "2", "note": "x"}
        assert sorted(f.keys()) == ["bias", "weight"]
