"""A manual-optimisation run (two optimisers) for the 2-rank test: one rank's body."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from fmlab.engine.config import OptimConfig, ScheduleConfig, TrainerConfig
from fmlab.engine.data import TensorSource
from fmlab.engine.trainer import Trainer
from tests.engine._objectives import blobs


class TwoHeads(nn.Module):
    """Two regressions on the same inputs, each stepped by its own optimiser (batch-mean losses,
    no noise: a 2-rank step with averaged gradients equals the 1-process step)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Linear(8, 1)
        self.b = nn.Linear(8, 2)

    def configure_optimizers(self, optim):
        return {"a": torch.optim.SGD(self.a.parameters(), lr=optim["a"].lr, momentum=0.9),
                "b": torch.optim.Adam(self.b.parameters(), lr=optim["b"].lr)}

    def training_step(self, batch, optimizers, step, generator):
        x = batch["images"].float()
        y = batch["labels"].float()
        logs = {}
        for name, net in (("a", self.a), ("b", self.b)):
            optimizers[name].zero_grad(set_to_none=True)
            loss = (net(x) - y[:, None]).pow(2).mean()
            loss.backward()
            optimizers[name].step()
            logs[f"{name}_loss"] = float(loss.detach())
        return logs


def manual_run(steps: int) -> tuple[TwoHeads, list]:
    x, y = blobs(64)
    obj = TwoHeads()
    cfg = TrainerConfig(batch_size=16, max_steps=steps, log_every=1, progress=False,
                        tensorboard=False, device="cpu")
    optim = {"a": OptimConfig(lr=0.01), "b": OptimConfig(lr=0.01)}
    res = Trainer(obj, TensorSource(x, y), cfg, optim, ScheduleConfig(name="constant")).fit()
    return obj, res.history


def manual_ddp_run(rank: int, world: int, port: int, out_dir: str, steps: int) -> None:
    """One rank: train, then write this rank's weights (every rank must end identical)."""
    from fmlab.engine import distributed as D

    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    D.init_distributed(backend="gloo", timeout_s=120)
    obj, history = manual_run(steps)
    w = {k: v.tolist() for k, v in obj.state_dict().items()}
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps({"weights": w, "history": history}))
    torch.distributed.destroy_process_group()
