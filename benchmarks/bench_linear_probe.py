"""LinearProbe (torch float32 L-BFGS) against scikit-learn's LogisticRegression(lbfgs, float64).

Same objective (C·ΣCE + ½‖W‖², bias unpenalised), same C and max_iter, each library's default
tol (fmlab 1e-5 is the stricter), same data, fits interleaved so that machine noise hits both
alike. Reports the median fit time of
each, their ratio, and how often their predictions agree on held-out and training features.

Default size: N=10,000 train, D=512, 100 classes (synthetic Gaussian mixture, L2-normalised
features), C=1 (scikit-learn's default).

Usage: python benchmarks/bench_linear_probe.py [--n 10000] [--dim 512] [--classes 100] [--C 1]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
import warnings

import numpy as np
import sklearn
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from fmlab.adapt import LinearProbe


def mixture(n: int, n_classes: int, dim: int, rng: np.random.Generator, means: np.ndarray):
    y = rng.integers(0, n_classes, n)
    X = 0.15 * means[y] + rng.normal(size=(n, dim))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X, y


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--n-test", type=int, default=5_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--classes", type=int, default=100)
    ap.add_argument("--C", type=float, default=1.0)
    ap.add_argument("--max-iter", type=int, default=100)
    ap.add_argument("--tol", type=float, default=1e-5, help="fmlab's tol (its default)")
    ap.add_argument("--sklearn-tol", type=float, default=1e-4, help="scikit-learn's (its default)")
    ap.add_argument("--reference", action="store_true",
                    help="also fit scikit-learn to tol=1e-8 and report agreement with that optimum")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1,
                    help="threads for both sides (torch and scikit-learn's BLAS/OpenMP); 1 keeps "
                         "the comparison fair and stable on a shared machine")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    limits = threadpool_limits(args.threads)  # noqa: F841  (kept alive for the whole run)

    rng = np.random.default_rng(0)
    means = rng.normal(size=(args.classes, args.dim))
    X, y = mixture(args.n, args.classes, args.dim, rng, means)
    Xq, yq = mixture(args.n_test, args.classes, args.dim, rng, means)
    X32, Xq32 = X.astype(np.float32), Xq.astype(np.float32)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}; torch {torch.__version__}, "
          f"scikit-learn {sklearn.__version__}; {args.threads} thread(s) each side")
    print(f"data: N={args.n}, D={args.dim}, {args.classes} classes, test {args.n_test}; "
          f"C={args.C}, max_iter={args.max_iter}, tol fmlab {args.tol} / sklearn "
          f"{args.sklearn_tol} (each library's default)")

    t_torch, t_sk = [], []
    lp = sk = None
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        lp = LinearProbe(C=args.C, max_iter=args.max_iter, tol=args.tol).fit(X32, y)
        t_torch.append(time.perf_counter() - t0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            t0 = time.perf_counter()
            sk = LogisticRegression(C=args.C, solver="lbfgs", max_iter=args.max_iter,
                                    tol=args.sklearn_tol).fit(X, y)
            t_sk.append(time.perf_counter() - t0)
    assert lp is not None and sk is not None
    p_lp, p_sk = lp.predict(Xq32), sk.predict(Xq)
    agree_test = float(np.mean(p_lp == p_sk))
    agree_train = float(np.mean(lp.predict(X32) == sk.predict(X)))
    mt, ms = statistics.median(t_torch), statistics.median(t_sk)
    print(f"fmlab LinearProbe (torch float32 L-BFGS): median {mt:.2f} s  "
          f"(runs {', '.join(f'{t:.2f}' for t in t_torch)}; {lp.n_iter_} iterations)")
    print(f"sklearn LogisticRegression (float64):     median {ms:.2f} s  "
          f"(runs {', '.join(f'{t:.2f}' for t in t_sk)}; {int(sk.n_iter_[0])} iterations)")
    pair = statistics.median(s / t for s, t in zip(t_sk, t_torch))
    print(f"speed-up sklearn/fmlab: {ms / mt:.1f}x from the medians, {pair:.1f}x median of the "
          f"{args.repeats} side-by-side pairs (target >= 3x)")
    print(f"prediction agreement: test {100 * agree_test:.2f}%, train {100 * agree_train:.2f}% "
          f"(target >= 99%)")
    print(f"test accuracy: fmlab {100 * np.mean(p_lp == yq):.2f}%, "
          f"sklearn {100 * np.mean(p_sk == yq):.2f}%")
    if args.reference:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            ref = LogisticRegression(C=args.C, max_iter=5000, tol=1e-8).fit(X, y).predict(Xq)
        print(f"agreement with the tol=1e-8 optimum: fmlab {100 * np.mean(p_lp == ref):.2f}%, "
              f"sklearn {100 * np.mean(p_sk == ref):.2f}%")


if __name__ == "__main__":
    main()
