"""PRDC at 50,000 x 50,000 (D = 64): peak memory and time of the blocked computation.

The reference ``prdc`` package builds three full 50k x 50k float64 distance matrices (about
20 GB each); fmlab works in row blocks of ``--block-mb`` MiB. Peak RSS is the process maximum
(``ru_maxrss``), which includes the Python/torch baseline printed first.

    python benchmarks/bench_prdc.py [--n 50000] [--dim 64] [--dtype float64] [--block-mb 64]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time

import numpy as np
import torch

from fmlab.metrics import prdc


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    ap.add_argument("--block-mb", type=int, default=64)
    args = ap.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}, "
          f"torch threads {torch.get_num_threads()}, torch {torch.__version__}")
    rng = np.random.default_rng(0)
    real = rng.standard_normal((args.n, args.dim))
    fake = rng.standard_normal((args.n, args.dim)) * 1.1 + 0.05
    base = peak_rss_mib()
    print(f"baseline peak RSS (features loaded): {base:.0f} MiB")
    t = time.perf_counter()
    out = prdc(real, fake, k=args.k, block_bytes=args.block_mb << 20, dtype=args.dtype)
    elapsed = time.perf_counter() - t
    print(f"PRDC {args.n}x{args.n} D={args.dim} k={args.k} {args.dtype} block={args.block_mb} MiB: "
          f"{elapsed:.1f} s, peak RSS {peak_rss_mib():.0f} MiB "
          f"(+{peak_rss_mib() - base:.0f} MiB over baseline)")
    print("values: " + ", ".join(f"{k}={v:.4f}" for k, v in out.items()))


if __name__ == "__main__":
    main()
