"""fp32 vs bf16 matmul speed on this CPU, side by side in one run (docs/benchmarks.md, bf16).

Whether bf16 autocast helps depends on the CPU: with AVX512-BF16 / AMX, bf16 matmuls run faster
than fp32; without them PyTorch emulates bf16 and it is far slower. Run this before turning on
``trainer.bf16`` or ``--bf16`` on a new machine.

    OMP_NUM_THREADS=1 python benchmarks/bench_bf16_matmul.py --size 512 --reps 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            words = next(line for line in f if line.startswith("flags")).split()
        flags = " ".join(w for w in words if "bf16" in w or w.startswith("amx")) or "none"
    except (OSError, StopIteration):
        flags = "unknown"
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(a.size, a.size, generator=g), torch.randn(a.size, a.size, generator=g)
    times: dict[torch.dtype, list[float]] = {torch.float32: [], torch.bfloat16: []}
    for _ in range(a.reps):  # interleaved, so load changes hit both alike
        for dt in times:
            u, v = x.to(dt), y.to(dt)
            t = time.perf_counter()
            u @ v
            times[dt].append(time.perf_counter() - t)
    f32, b16 = (statistics.median(times[d]) for d in (torch.float32, torch.bfloat16))
    print(f"CPU bf16 flags: {flags}; threads {torch.get_num_threads()}; {a.size}x{a.size} matmul")
    print(f"fp32 {1e3 * f32:.2f} ms, bf16 {1e3 * b16:.2f} ms: bf16 is {f32 / b16:.2f}x the fp32 speed")


if __name__ == "__main__":
    main()
