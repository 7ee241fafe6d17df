"""Wall time of the full few-shot sweep: 6 methods × shots 1,2,4,8,16 × seeds 1,2,3.

Default: synthetic 10-class, 64-d Gaussian-mixture features, 50,000 train / 10,000 test (the shape
of CIFAR-10 ResNet features). The budget is < 2 minutes on a 2-core CPU. With ``--features
PATH.npz`` (keys train_features, train_labels, test_features, test_labels) it runs on real cached
features instead, e.g. resnet56 CIFAR-10 features exported from the feature cache.

Usage: python benchmarks/bench_adapt_sweep.py [--features PATH.npz] [--methods ncm,knn,...]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

import numpy as np
import torch

from fmlab.adapt import run_sweep, summarize


def synthetic(n_train: int, n_test: int, n_classes: int, dim: int, seed: int = 0):
    """Gaussian mixture with anisotropic shared noise, features L2-normalised like CNN/CLIP ones."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(n_classes, dim))
    means *= 2.0 / np.linalg.norm(means, axis=1, keepdims=True)
    scale = np.linspace(1.5, 0.3, dim)
    rot = np.linalg.qr(rng.normal(size=(dim, dim)))[0]

    def draw(n):
        y = rng.integers(0, n_classes, n)
        X = means[y] + (rng.normal(size=(n, dim)) * scale) @ rot.T
        X /= np.linalg.norm(X, axis=1, keepdims=True)
        return X.astype(np.float32), y.astype(np.int64)

    Xtr, ytr = draw(n_train)
    Xte, yte = draw(n_test)
    return Xtr, ytr, Xte, yte


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--features", default=None, help="npz with train/test features and labels")
    ap.add_argument("--methods", default="ncm,knn,linear,gda,tip,tipf")
    ap.add_argument("--shots", default="1,2,4,8,16")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--n-train", type=int, default=50_000)
    ap.add_argument("--n-test", type=int, default=10_000)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--dim", type=int, default=64)
    args = ap.parse_args()

    if args.features:
        z = np.load(args.features)
        Xtr, ytr, Xte, yte = (z[k] for k in ("train_features", "train_labels", "test_features",
                                             "test_labels"))
        what = f"features from {args.features}"
    else:
        Xtr, ytr, Xte, yte = synthetic(args.n_train, args.n_test, args.classes, args.dim)
        what = "synthetic Gaussian-mixture features"
    methods = args.methods.split(",")
    shots = tuple(int(s) if s != "all" else "all" for s in args.shots.split(","))
    seeds = tuple(int(s) for s in args.seeds.split(","))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads)")
    print(f"data: {what}; train {Xtr.shape}, test {Xte.shape}, {len(np.unique(ytr))} classes")
    print(f"sweep: methods {methods} x shots {shots} x seeds {seeds}")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        recs = run_sweep(Xtr, ytr, Xte, yte, methods, shots=shots, seeds=seeds, split_dir=tmp)
        total = time.perf_counter() - t0
    print()
    print(summarize(recs))
    fit_total = {m: sum(r["fit_seconds"] for r in recs if r["method"] == m) for m in methods}
    print("total fit seconds per method: " +
          ", ".join(f"{m} {s:.2f}" for m, s in fit_total.items()))
    print(f"sweep wall time: {total:.1f} s for {len(recs)} fits (budget 120 s)")


if __name__ == "__main__":
    main()
