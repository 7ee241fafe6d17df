"""Canvases per second of the ``canvas`` synthetic source on one core (issue 21 asks >= 5,000/s).

Renders batches of 256 canvases (64x64, up to 3 objects, MNIST objects by default) through the
source's split, as a training loop would: ``get_batch`` (images only) and ``render`` (images,
boxes, masks, labels and captions). numpy/torch run one thread. Both wall-clock and process CPU
time are reported: the CPU-time rate is the one that survives a shared, loaded machine.

Usage: python benchmarks/bench_synthetic.py [--objects mnist] [--size 64] [--max-objects 3]
                                            [--noise 0] [--background none] [--distractors 0]
                                            [--batch 256] [--batches 40] [--repeats 3]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from fmlab.data import open_source  # noqa: E402


def _rate(fn, batches: int, batch: int, repeats: int) -> tuple[float, float]:
    """Best canvases/s over ``repeats`` runs of ``batches`` batches: (wall, cpu)."""
    fn(np.arange(batch))  # warm-up: decodes the pool once
    wall, cpu = [], []
    for r in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        for b in range(batches):
            start = (r * batches + b) * batch
            fn(np.arange(start, start + batch))
        wall.append(batches * batch / (time.perf_counter() - t0))
        cpu.append(batches * batch / (time.process_time() - c0))
    return max(wall), max(cpu)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--objects", default="mnist")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--max-objects", type=int, default=3)
    ap.add_argument("--noise", type=float, default=0.0)
    ap.add_argument("--background", default="none", help="none | gradient | texture")
    ap.add_argument("--distractors", type=int, default=0)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    n = args.batch * args.batches * (args.repeats + 1)
    spec = (f"canvas?objects={args.objects}&size={args.size}&max_objects={args.max_objects}"
            f"&noise={args.noise}&n_train={n}")
    if args.background != "none" or args.distractors:
        spec += f"&background={args.background}&distractors={args.distractors}"
    split = open_source(spec).split("train")
    images_wall, images_cpu = _rate(split.get_batch, args.batches, args.batch, args.repeats)
    full_wall, full_cpu = _rate(split.render, args.batches, args.batch, args.repeats)
    print(json.dumps({
        "spec": spec, "batch": args.batch, "threads": 1, "cpu": platform.processor() or platform.machine(),
        "images_per_s_wall": round(images_wall), "images_per_s_cpu": round(images_cpu),
        "render_all_per_s_wall": round(full_wall), "render_all_per_s_cpu": round(full_cpu),
    }, indent=1))


if __name__ == "__main__":
    main()
