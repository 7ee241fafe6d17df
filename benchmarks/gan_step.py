"""Time of one GAN step on CPU: bare ``gan_step`` vs the ``fmlab gan train`` loop's step.

For each variant of the MNIST configs (DCGAN 32×32 grey, batch 64): the median wall time of a
bare :func:`fmlab.gan.gan_step` on a fixed batch, and of the engine's ``Trainer.train_step`` (batch
fetch from the seeded permutation, uint8 → [-1, 1] with the 28 → 32 resize, per-step seeding,
schedule) — measured side by side in one process, so their ratio is the loop's overhead.
At one thread a step's wall time is its CPU time, so 60,000 / (loop step ms) is the steps per
CPU-minute that the budgets of ``benchmarks/gan_runs.py`` buy.
Synthetic uint8 28×28 images stand in for MNIST (the step time does not depend on content).

    python benchmarks/gan_step.py [--ch 32] [--steps 15] [--threads 2]

A third column times the loop step under bfloat16 autocast (``trainer.bf16=true``) in the same
round-robin, so fp32/bf16 is a side-by-side ratio.
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

from fmlab.experiments.gan import GANTrainer
from fmlab.experiments.gan_config import load_gan_config
from fmlab.experiments.gan_data import GANTrainData
from fmlab.gan import gan_step, to_gan_input

VARIANTS = {
    "hinge": [],
    "ac": ["data.conditional=true", "model.cond=ac"],
    "adc": ["data.conditional=true", "model.cond=adc"],
    "adaptivemix": ["gan.adaptivemix=true"],
    "diffaug": ["gan.diffaug=color,translation,cutout"],
}


def fake_mnist(n: int = 2048, seed: int = 0) -> GANTrainData:
    rng = np.random.default_rng(seed)
    return GANTrainData(images=rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
                        labels=(np.arange(n) % 10).astype(np.int64), indices=np.arange(n),
                        class_names=[str(i) for i in range(10)], content_hash=None,
                        origin="synthetic")


def interleaved_ms(*fns, steps: int, warmup: int = 3) -> list[float]:
    """Median ms of each function, timed round-robin so machine-load drift hits all alike."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(steps):
        for fn, acc in zip(fns, times):
            t0 = time.perf_counter()
            fn()
            acc.append(time.perf_counter() - t0)
    return [1000 * statistics.median(t) for t in times]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ch", type=int, default=32)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads; DCGAN ch={args.ch}, "
          f"batch {args.batch}, 32x32 grey; median of {args.steps} steps each, interleaved")
    print(f"{'variant':12s} {'gan_step ms':>12s} {'loop step ms':>13s} {'loop/bare':>10s} "
          f"{'bf16 loop ms':>13s} {'fp32/bf16':>10s}")
    data = fake_mnist()
    with tempfile.TemporaryDirectory() as tmp:
        for name, extra in VARIANTS.items():
            base = [f"model.ch={args.ch}", f"trainer.batch_size={args.batch}",
                    "trainer.max_steps=100000", "trainer.progress=false", *extra]
            tr = GANTrainer(load_gan_config(None, base), f"{tmp}/{name}", data=data, db=None)
            tr16 = GANTrainer(load_gan_config(None, [*base, "trainer.bf16=true"]),
                              f"{tmp}/{name}_bf16", data=data, db=None)
            tr.trainer.begin()  # the engine's loop, one train_step() at a time
            tr16.trainer.begin()
            x = to_gan_input(data.images[:args.batch], 1, 32)
            y = torch.from_numpy(data.labels[:args.batch]) if tr.num_classes else None
            g = torch.Generator().manual_seed(0)

            def bare(tr=tr, x=x, y=y, g=g) -> None:
                obj, opt = tr.objective, tr.trainer.optimizers
                gan_step(obj.G, obj.D, opt["g"], opt["d"], x, y, obj.step_cfg, g, obj.state)

            bare_ms, loop_ms, bf16_ms = interleaved_ms(bare, tr.trainer.train_step,
                                                       tr16.trainer.train_step, steps=args.steps)
            tr.trainer.close()
            tr16.trainer.close()
            print(f"{name:12s} {bare_ms:12.1f} {loop_ms:13.1f} {loop_ms / bare_ms:10.2f} "
                  f"{bf16_ms:13.1f} {loop_ms / bf16_ms:10.2f}")


if __name__ == "__main__":
    main()
