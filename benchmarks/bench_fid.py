"""FID trace term: fmlab's eigenvalue route vs ``scipy.linalg.sqrtm`` at D = 2048.

Both routes get the same covariance matrices, in three cases: N = 2D samples on both sides
(full rank: Cholesky factor), N = D/2 fakes against 2D reals (one side singular: the other side
is factored) and N = D/2 on both sides (both singular: eigh factor). Timings are the median of
``--repeats`` runs, measured side by side in one process.

    python benchmarks/bench_fid.py [--dim 2048] [--repeats 1]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
import scipy
import scipy.linalg
import torch

from fmlab.metrics import frechet_distance


def fid_sqrtm(mu1, s1, mu2, s2) -> float:
    """The formula as pytorch-fid writes it (without its eps fallback), via scipy's sqrtm."""
    covmean = np.real(scipy.linalg.sqrtm(s1 @ s2))
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def timed(fn, args, repeats):
    times, value = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        value = fn(*args)
        times.append(time.perf_counter() - t)
    return value, statistics.median(times)


def stats(rng, n, d, scale, shift):
    a = rng.standard_normal((n, d)) * scale + shift
    mix = np.eye(d) + 0.1 * rng.standard_normal((d, d)) / np.sqrt(d)
    x = a @ mix
    return x.mean(0), np.cov(x, rowvar=False)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}, "
          f"torch threads {torch.get_num_threads()}, numpy {np.__version__}, "
          f"scipy {scipy.__version__}")
    rng = np.random.default_rng(0)
    big, small = 2 * args.dim, args.dim // 2
    for n_real, n_fake in ((big, big), (big, small), (small, small)):
        mu1, s1 = stats(rng, n_real, args.dim, 1.0, 0.0)
        mu2, s2 = stats(rng, n_fake, args.dim, 1.2, 0.05)
        ours, t_ours = timed(frechet_distance, (mu1, s1, mu2, s2), args.repeats)
        ref, t_ref = timed(fid_sqrtm, (mu1, s1, mu2, s2), args.repeats)
        print(f"D={args.dim} N_real={n_real} N_fake={n_fake}: eigen {t_ours:.2f} s, "
              f"sqrtm {t_ref:.2f} s, speed-up {t_ref / t_ours:.1f}x; FID {ours:.6f} vs "
              f"{ref:.6f}, relative difference {abs(ours - ref) / abs(ref):.1e}", flush=True)


if __name__ == "__main__":
    main()
