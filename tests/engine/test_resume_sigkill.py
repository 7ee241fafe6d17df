"""SIGKILL at an arbitrary step, resume, and end bit-for-bit where an uninterrupted run ends.

The fast variant forks (the child inherits the imported torch); the slow one starts fresh
interpreters with subprocess, as a user's crashed job would be.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fmlab.engine.checkpoint import latest_checkpoint
from fmlab.engine.logger import read_metrics

from . import _workers

WORKER = Path(_workers.__file__)
pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork and SIGKILL")


def _final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    ref = latest_checkpoint(run_dir)
    assert ref is not None and ref.step == _workers.RESUME_STEPS
    return load_file(str(ref.weights))


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    assert any(k.startswith("teacher.") for k in a)  # the EMA teacher is compared too
    for k, v in a.items():
        assert torch.equal(v, b[k]), f"{k} differs after resume"


def _steps_logged(run_dir: Path) -> int:
    try:
        return sum(1 for r in read_metrics(run_dir) if "loss" in r)
    except ValueError:  # a line being written
        return 0


def _fork(target, *args) -> mp.Process:
    # torch.optim imports torch._dynamo on first use (seconds); do it once here so every
    # forked child inherits it
    import torch._dynamo  # noqa: F401

    p = mp.get_context("fork").Process(target=target, args=args)
    p.start()
    return p


def _run_to_end(run_dir: Path, ckpt_every: int, resume: bool) -> None:
    p = _fork(_workers.resume_run, str(run_dir), ckpt_every, resume)
    p.join(60)
    assert p.exitcode == 0, f"worker failed ({p.exitcode})"


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, torch.Tensor]:
    run = tmp_path_factory.mktemp("uninterrupted")
    _run_to_end(run, 0, resume=False)
    return _final_weights(run)


@pytest.mark.parametrize("ckpt_every,kill_after,extra_delay",
                         [(1, 5, 0.004), (2, 9, 0.0), (3, 7, 0.011)])
def test_sigkill_resume_is_bit_exact_fork(tmp_path, reference, ckpt_every, kill_after,
                                          extra_delay):
    p = _fork(_workers.resume_run, str(tmp_path), ckpt_every, False, 0.02)
    deadline = time.monotonic() + 60
    while _steps_logged(tmp_path) < kill_after:
        assert p.is_alive() and time.monotonic() < deadline, "worker ended before the kill"
        time.sleep(0.002)
    time.sleep(extra_delay)
    os.kill(p.pid, signal.SIGKILL)
    p.join(10)
    assert p.exitcode == -signal.SIGKILL
    ref = latest_checkpoint(tmp_path)
    assert ref is not None and ref.step < _workers.RESUME_STEPS  # it really was cut short
    _run_to_end(tmp_path, ckpt_every, resume=True)
    _assert_same(_final_weights(tmp_path), reference)
    leftovers = [p.name for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".")]
    assert leftovers == []  # a killed writer's temporary files are swept by the next save
    steps = [r["step"] for r in read_metrics(tmp_path) if "loss" in r]
    assert steps == list(range(1, _workers.RESUME_STEPS + 1))


def _python(*args: str, env_extra: dict | None = None) -> subprocess.Popen:
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.Popen([sys.executable, str(WORKER), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


@pytest.mark.slow
@pytest.mark.parametrize("ckpt_every,kill_after", [(1, 4), (2, 7), (3, 10)])
def test_sigkill_resume_is_bit_exact_subprocess(tmp_path, ckpt_every, kill_after):
    ref_dir = tmp_path / "ref"
    p = _python("resume", str(ref_dir), "0")
    assert p.wait(300) == 0, p.stderr.read()
    run = tmp_path / "run"
    p = _python("resume", str(run), str(ckpt_every), env_extra={"STEP_SLEEP": "0.05"})
    for line in p.stdout:
        if line.strip() == f"step {kill_after}":
            p.send_signal(signal.SIGKILL)
            break
    assert p.wait(60) == -signal.SIGKILL
    q = _python("resume", str(run), str(ckpt_every), "--resume")
    assert q.wait(300) == 0, q.stderr.read()
    _assert_same(_final_weights(run), _final_weights(ref_dir))
