"""The engine's own cost per step: ``Trainer.fit`` on a 10-parameter model, batch 8.

With a model this small the step is almost all loop (batch fetch, per-step seeding, schedule,
log window, hooks, callbacks), so this isolates what a change to the loop adds per step, which a
real model's milliseconds of compute would hide in machine noise. Reports the median CPU
microseconds per step (process time between ``on_after_optimizer_step`` calls after a warm-up
of 100 steps) over ``--reps`` fits.

    python benchmarks/bench_loop_step.py [--steps 3000] [--reps 4]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from torch import nn

from fmlab.engine import OptimConfig, ScheduleConfig, TensorSource, Trainer, TrainerConfig


class Tiny(nn.Module):
    """Logistic regression on 4 features, clocked after every optimiser step."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 2)
        self.stamps: list[float] = []

    def forward(self, batch):
        return nn.functional.cross_entropy(self.lin(batch["images"].float()), batch["labels"]), {}

    def on_after_optimizer_step(self, step: int, max_steps: int) -> None:
        self.stamps.append(time.process_time())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--reps", type=int, default=4)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    src = TensorSource(rng.normal(size=(4096, 4)).astype(np.float32), rng.integers(0, 2, 4096))
    per_step = []
    for _ in range(args.reps):
        obj = Tiny()
        cfg = TrainerConfig(max_steps=args.steps, batch_size=8, log_every=50, progress=False, tensorboard=False)
        Trainer(obj, src, cfg, OptimConfig(name="sgd", lr=0.01), ScheduleConfig(), run_dir=None).fit()
        per_step.append((obj.stamps[-1] - obj.stamps[100]) / (len(obj.stamps) - 101) * 1e6)
    print(f"loop step: median {statistics.median(per_step):.1f} us CPU "
          f"({', '.join(f'{x:.1f}' for x in per_step)})")


if __name__ == "__main__":
    main()
