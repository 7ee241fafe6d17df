"""Engine overhead: fmlab.engine.Trainer vs a bare PyTorch loop, same model, loss, batch, optimiser.

Both loops train a CIFAR-sized small CNN (3 conv + BN + linear, cross-entropy) on in-memory uint8
32x32x3 images with momentum SGD at batch 64. The engine runs with checkpointing off (apart from
its final checkpoint and encoder export, which are timed too), metrics logged every 50 steps, no
progress bar. Repetitions are interleaved (bare, engine, bare, engine, ...) so machine load hits
both alike. Two throughputs per loop: the whole call (setup and final checkpoint included) and the
steady state (clocked by an ``on_after_optimizer_step`` hook from the end of step 5 to the last
step: every per-step cost of the loop — seeding, schedule, logging — and none of the one-off
costs, which a short benchmark run would otherwise over-weight). The ratio of median throughputs
is reported, from wall-clock time and from this
process's CPU time (``time.process_time``: on a shared, oversubscribed machine it counts the work
each loop does rather than how long the scheduler kept it waiting; run with ``--threads 1`` so the
two agree on an idle machine).

    python benchmarks/bench_engine_overhead.py [--steps 200] [--reps 12] [--batch 64] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fmlab.engine import OptimConfig, ScheduleConfig, TensorSource, Trainer, TrainerConfig
from fmlab.engine.data import epoch_permutation

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()

        def block(cin: int, cout: int, stride: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
                                 nn.BatchNorm2d(cout), nn.ReLU(inplace=True))
        self.encoder = nn.Sequential(block(3, 16, 1), block(16, 32, 2), block(32, 64, 2),
                                     nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(64, 10)
        self.stamps: list[tuple[float, float]] = []

    def on_after_optimizer_step(self, step: int, max_steps: int) -> None:
        """Clock after every optimiser step (the engine calls this hook; the bare loop too)."""
        self.stamps.append((time.perf_counter(), time.process_time()))

    def forward(self, batch):
        """The objective: uint8 NHWC -> normalised NCHW -> CE loss."""
        x = batch["images"].permute(0, 3, 1, 2).float().div_(255).sub_(MEAN).div_(STD)
        loss = F.cross_entropy(self.head(self.encoder(x)), batch["labels"])
        return loss, {}


def _model() -> SmallCNN:
    torch.manual_seed(0)
    return SmallCNN()


def bare_loop(src: TensorSource, steps: int, batch: int, lr: float) -> tuple[float, float]:
    """Images per second of the plain loop: (wall clock, process CPU time)."""
    model = _model().train()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    n = len(src)
    per_epoch = n // batch
    t0, c0 = time.perf_counter(), time.process_time()
    for step in range(steps):
        epoch, k = divmod(step, per_epoch)
        if k == 0:
            perm = epoch_permutation(n, 0, epoch)
        idx = perm[k * batch:(k + 1) * batch]
        loss, _ = model(src.get_batch(idx))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        model.on_after_optimizer_step(step, steps)
    loss.item()  # wait for the last step (a no-op on CPU, a sync on GPU)
    return _rates(steps * batch, t0, c0) + _steady(model.stamps, batch)


def _rates(images: int, t0: float, c0: float) -> tuple[float, float]:
    return images / (time.perf_counter() - t0), images / (time.process_time() - c0)


def _steady(stamps: list[tuple[float, float]], batch: int, skip: int = 5) -> tuple[float, float]:
    """Steady-state images/s between the end of step ``skip`` and the end of the last step:
    every per-step cost of the loop, none of the one-off setup or final checkpoint."""
    (w0, c0), (w1, c1) = stamps[skip - 1], stamps[-1]
    n = (len(stamps) - skip) * batch
    return n / (w1 - w0), n / (c1 - c0)


def engine_loop(src: TensorSource, steps: int, batch: int, lr: float,
                run_dir: str) -> tuple[float, float]:
    """Images per second of Trainer.fit (whole call, setup and final checkpoint included)."""
    cfg = TrainerConfig(max_steps=steps, batch_size=batch, log_every=50, checkpoint_every=0,
                        progress=False, tensorboard=False)
    ocfg = OptimConfig(name="sgd", lr=lr, momentum=0.9, weight_decay=5e-4)
    model = _model()
    trainer = Trainer(model, src, cfg, ocfg, ScheduleConfig(), run_dir=run_dir)
    t0, c0 = time.perf_counter(), time.process_time()
    trainer.fit()
    return _rates(steps * batch, t0, c0) + _steady(model.stamps, batch)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--reps", type=int, default=12)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    n = 2048
    src = TensorSource(rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
                       rng.integers(0, 10, n))
    print(f"machine: {platform.platform()} | {platform.processor() or platform.machine()} | "
          f"cpus={os.cpu_count()} | torch {torch.__version__} threads={torch.get_num_threads()} "
          f"| loadavg(1m) before={os.getloadavg()[0]:.2f}")
    print(f"model: SmallCNN (3 conv+BN, {sum(p.numel() for p in _model().parameters())} params)"
          f" | batch {args.batch} | {args.steps} steps/rep | {args.reps} interleaved reps")
    with tempfile.TemporaryDirectory() as tmp:
        bare_loop(src, 8, args.batch, 0.05)  # warm-up: allocator, oneDNN kernels, imports
        engine_loop(src, 8, args.batch, 0.05, os.path.join(tmp, "warm"))
        bare, eng = [], []
        for r in range(args.reps):
            bare.append(bare_loop(src, args.steps, args.batch, 0.05))
            eng.append(engine_loop(src, args.steps, args.batch, 0.05, os.path.join(tmp, f"r{r}")))
            print(f"rep {r}: wall bare {bare[-1][0]:7.1f} engine {eng[-1][0]:7.1f} img/s "
                  f"ratio {eng[-1][0] / bare[-1][0]:.3f} | cpu-time bare {bare[-1][1]:7.1f} "
                  f"engine {eng[-1][1]:7.1f} img/s ratio {eng[-1][1] / bare[-1][1]:.3f} | "
                  f"steady cpu-time ratio {eng[-1][3] / bare[-1][3]:.3f}", flush=True)
    for i, what in ((0, "whole call, wall clock"), (1, "whole call, CPU time  "),
                    (2, "steady state, wall    "), (3, "steady state, CPU time")):
        mb = statistics.median(b[i] for b in bare)
        me = statistics.median(e[i] for e in eng)
        pair = statistics.median(e[i] / b[i] for e, b in zip(eng, bare))
        print(f"{what}: median bare {mb:.1f} img/s | median engine {me:.1f} img/s | "
              f"engine/bare = {me / mb:.3f} (median of per-rep ratios {pair:.3f})")
    print(f"loadavg(1m) after={os.getloadavg()[0]:.2f}")

if __name__ == "__main__":
    main()
