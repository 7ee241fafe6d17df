"""Training runs executed in child processes by the resume and DDP tests.

Run as a script (``python _workers.py resume RUN_DIR CKPT_EVERY [--resume]``) for the
fresh-interpreter variants; the fast tests fork and call the functions directly, so the child
inherits the already-imported torch instead of paying the import again.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a script: make ``tests.engine`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from fmlab.engine.config import OptimConfig, ScheduleConfig, TrainerConfig
from fmlab.engine.data import TensorSource
from fmlab.engine.trainer import Trainer
from tests.engine._objectives import (
    TinyObjective,
    blobs,
    noise_transform,
)

RESUME_STEPS = 14


def resume_run(run_dir: str, checkpoint_every: int, resume: bool = False,
               step_sleep: float = 0.0) -> None:
    """14 steps (3.5 epochs) with dropout, an EMA teacher, a random transform, clipping,
    accumulation, AdamW with weight-decay ramp; prints ``step N`` after each step."""
    torch.set_num_threads(1)
    x, y = blobs(64)
    obj = TinyObjective(dropout=0.2, ema=True)
    hook = obj.on_after_optimizer_step

    def announce(step: int, max_steps: int) -> None:
        hook(step, max_steps)
        print(f"step {step + 1}", flush=True)
        if step_sleep:
            time.sleep(step_sleep)
    obj.on_after_optimizer_step = announce
    cfg = TrainerConfig(batch_size=8, accumulate=2, max_steps=RESUME_STEPS,
                        checkpoint_every=checkpoint_every, keep_last=2, log_every=1,
                        grad_clip=0.5, progress=False, tensorboard=False)
    Trainer(obj, TensorSource(x, y), cfg, OptimConfig(name="adamw", lr=0.02, weight_decay=0.05),
            ScheduleConfig(warmup_steps=2, final_weight_decay=0.2), run_dir=run_dir,
            transform=noise_transform).fit(resume=run_dir if resume else None)


def ddp_config(steps: int) -> tuple[TrainerConfig, OptimConfig, ScheduleConfig]:
    return (TrainerConfig(batch_size=16, accumulate=2, max_steps=steps, log_every=1,
                          grad_clip=1.0, progress=False, tensorboard=False),
            OptimConfig(name="sgd", lr=0.2, momentum=0.9, weight_decay=1e-3),
            ScheduleConfig(warmup_steps=2))


def ddp_reference_run(steps: int):
    """Train the DDP test's model; returns it, the FitResult and the sample ids it saw."""
    x, y = blobs(128)
    obj = TinyObjective()
    seen: list[torch.Tensor] = []
    obj.register_forward_pre_hook(lambda m, args: seen.append(args[0]["ids"].clone()))
    cfg, ocfg, scfg = ddp_config(steps)
    res = Trainer(obj, TensorSource(x, y, ids=torch.arange(len(x))), cfg, ocfg, scfg).fit()
    return obj, res, torch.stack(seen)


def ddp_run(rank: int, world: int, port: int, out_dir: str, steps: int) -> None:
    """One rank of a gloo DDP run (launched by fork or by torchrun)."""
    from fmlab.engine import distributed as D

    torch.set_num_threads(1)
    if port:  # forked: play torchrun
        os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                          MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    info = D.init_distributed(backend="gloo", timeout_s=120)
    assert (info.rank, info.world_size) == (rank, world)
    _check_collectives(info.rank, info.world_size)
    obj, res, seen = ddp_reference_run(steps)
    ids = D.all_gather_nograd(seen.unsqueeze(0))  # (world, micro-batches, per-rank batch)
    if info.rank == 0:
        w = {k: v.tolist() for k, v in obj.state_dict().items()}
        Path(out_dir, "ddp.json").write_text(json.dumps(
            {"history": res.history, "weights": w, "ids": ids.tolist()}))
    torch.distributed.destroy_process_group()


def _check_collectives(rank: int, world: int) -> None:
    """gather_with_grad sends every rank's gradient back to the rows' owner; all_reduce_mean averages."""
    from fmlab.engine import distributed as D

    x = torch.full((2, 3), float(rank + 1), requires_grad=True)
    g = D.gather_with_grad(x)
    expected = torch.cat([torch.full((2, 3), float(r + 1)) for r in range(world)])
    assert torch.equal(g.detach(), expected), g
    coef = torch.arange(g.numel(), dtype=torch.float32).reshape(g.shape)
    (g * coef).sum().backward()
    # every rank's loss touches every row with the same coefficients: the owner gets their sum
    assert torch.equal(x.grad, world * coef[2 * rank:2 * rank + 2]), x.grad
    m = D.all_reduce_mean(torch.tensor([float(rank)]))
    assert torch.allclose(m, torch.tensor([(world - 1) / 2])), m
    assert torch.equal(D.all_gather_nograd(torch.tensor([rank])), torch.arange(world))


if __name__ == "__main__":
    kind = sys.argv[1]
    if kind == "resume":
        resume_run(sys.argv[2], int(sys.argv[3]), resume="--resume" in sys.argv,
                   step_sleep=float(os.environ.get("STEP_SLEEP", "0")))
    elif kind == "ddp":  # under torchrun
        ddp_run(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), 0, sys.argv[2],
                int(sys.argv[3]))
        # gloo's threads sometimes abort the interpreter's shutdown after the work is done
        # ("terminate called without an active exception", no Python frame; about 1 run in 8,
        # before issue 27 too): leave without the C++ static destructors
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    else:
        raise SystemExit(f"unknown worker {kind!r}")
