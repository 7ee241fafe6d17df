"""DDP: a 2-process gloo run matches a 1-process run with the same global batch.

Fast variant: two forked ranks (they inherit the imported torch). Slow variant: torchrun.
Both also check gather_with_grad / all_reduce_mean inside the ranks (_workers._check_collectives).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fmlab.engine.distributed import all_reduce_mean, gather_with_grad, init_distributed

from . import _workers

STEPS = 6


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _single_process() -> dict:
    obj, res, seen = _workers.ddp_reference_run(STEPS)
    return {"history": res.history, "weights": dict(obj.state_dict()), "ids": seen}


def _compare(one: dict, two: dict) -> None:
    # each rank saw its own half of every micro-batch, together exactly the 1-process batch
    ranks = torch.tensor(two["ids"])  # (2, micro-batches, 8)
    assert ranks.shape == (2, 2 * STEPS, 8)
    union = torch.cat([ranks[0], ranks[1]], dim=1).sort(dim=1).values
    assert torch.equal(union, one["ids"].sort(dim=1).values)
    assert all(len(set(row.tolist())) == 16 for row in union)
    l1 = torch.tensor([r["loss"] for r in one["history"]])
    l2 = torch.tensor([r["loss"] for r in two["history"]])
    assert len(l1) == len(l2) == STEPS
    assert l1[-1] < l1[0]  # it trained
    torch.testing.assert_close(l2, l1, rtol=1e-4, atol=0)
    for k, v in one["weights"].items():
        torch.testing.assert_close(torch.tensor(two["weights"][k]), v, rtol=1e-4, atol=1e-6)


def test_single_process_collectives_are_identity(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    info = init_distributed()
    assert (info.rank, info.world_size, info.is_main) == (0, 1, True)
    x = torch.randn(3, 2, requires_grad=True)
    assert gather_with_grad(x) is x
    assert torch.equal(all_reduce_mean(x), x.detach())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_ddp_two_ranks_match_one_fork(tmp_path):
    import torch._dynamo  # noqa: F401  (imported once here, inherited by the forked ranks)
    import torch.multiprocessing as tmp

    tmp.start_processes(_workers.ddp_run, args=(2, _free_port(), str(tmp_path), STEPS),
                        nprocs=2, start_method="fork", join=True)
    two = json.loads((tmp_path / "ddp.json").read_text())
    _compare(_single_process(), two)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("torchrun") is None and not Path(sys.executable).with_name(
    "torchrun").exists(), reason="torchrun not installed")
def test_ddp_two_ranks_match_one_torchrun(tmp_path):
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    cmd = [torchrun, "--standalone", "--nproc_per_node", "2", str(Path(_workers.__file__)),
           "ddp", str(tmp_path), str(STEPS)]
    out = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    _compare(_single_process(), json.loads((tmp_path / "ddp.json").read_text()))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_manual_optimisation_two_ranks_average_gradients_like_one_process(tmp_path):
    """An objective that steps its own optimisers gets data parallelism from the engine: rank 0's
    weights are broadcast and each ``step()`` averages the gradients, so two ranks on half
    batches train exactly like one process on the whole batch, and stay identical."""
    import torch._dynamo  # noqa: F401  (imported once here, inherited by the forked ranks)
    import torch.multiprocessing as tmp

    from . import _manual_workers as M

    tmp.start_processes(M.manual_ddp_run, args=(2, _free_port(), str(tmp_path), STEPS),
                        nprocs=2, start_method="fork", join=True)
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["weights"] == r1["weights"]
    one, history = M.manual_run(STEPS)
    for k, v in one.state_dict().items():
        torch.testing.assert_close(torch.tensor(r0["weights"][k]), v, rtol=1e-5, atol=1e-6)
    l1 = [r["logs"]["a_loss"] for r in history]
    l2 = [r["logs"]["a_loss"] for r in r0["history"]]
    torch.testing.assert_close(torch.tensor(l2), torch.tensor(l1), rtol=1e-5, atol=1e-7)
