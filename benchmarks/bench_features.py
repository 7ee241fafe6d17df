"""Feature-extraction overhead against the bare model forward pass on the same batches.

Both sides start from the same uint8 batches in memory and run preprocess + forward; the
extraction side is `fmlab.features.extract_features` (batching, progress off, result assembly,
finiteness check), the bare side is a plain loop. Repetitions are interleaved so that machine
noise hits both alike. Also times bf16 autocast against fp32 and reports their feature agreement.

Usage: FMLAB_DATA=../shared/data python benchmarks/bench_features.py [--backbone resnet56_cifar] [--n 5000]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

from fmlab.data import open_source
from fmlab.data.sources import ArraySplit
from fmlab.features import extract_features
from fmlab.models import create_backbone


def bare(bb, images: np.ndarray, batch_size: int) -> torch.Tensor:
    outs = []
    with torch.no_grad():
        for s in range(0, len(images), batch_size):
            outs.append(bb.trunk(bb.preprocess(torch.from_numpy(images[s:s + batch_size]))))
    return torch.cat(outs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backbone", default="resnet56_cifar")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--data", default="cifar10")
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    root = os.environ.get("FMLAB_DATA")
    weights = args.weights or (f"{root}/weights/resnet_cifar10/resnet56-4bfd9763.th"
                               if args.backbone == "resnet56_cifar" and root else None)
    bb = create_backbone(args.backbone, weights=weights)
    test = open_source(args.data).split("test")
    images = test.get_batch(np.arange(min(args.n, len(test))))
    split = ArraySplit(images, name="bench", labels=test.labels[:len(images)], class_names=test.class_names,
                       content_hash="bench", origin="bench")
    t_bare, t_ext, t_bf16 = [], [], []
    bare(bb, images[:512], args.batch_size)  # warm-up
    for _ in range(args.reps):
        t0 = time.perf_counter()
        ref = bare(bb, images, args.batch_size)
        t_bare.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        fs = extract_features(bb, split, batch_size=args.batch_size, progress=False)
        t_ext.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        fb = extract_features(bb, split, batch_size=args.batch_size, progress=False, autocast="bf16")
        t_bf16.append(time.perf_counter() - t0)
    assert torch.allclose(ref, fs.features, atol=1e-4)
    cos = torch.nn.functional.cosine_similarity(fs.features, fb.features).mean().item()
    b, e, h = np.median(t_bare), np.median(t_ext), np.median(t_bf16)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}")
    print(f"{args.backbone} on {len(images)} images of {args.data}:test, batch {args.batch_size}, "
          f"median of {args.reps} interleaved reps")
    print(f"bare forward:        {b:.2f} s ({len(images) / b:.0f} img/s)")
    print(f"extract_features:    {e:.2f} s ({len(images) / e:.0f} img/s)  overhead {100 * (e / b - 1):+.1f}%")
    print(f"extract bf16:        {h:.2f} s ({len(images) / h:.0f} img/s)  speed-up vs fp32 {e / h:.2f}x, "
          f"mean cosine to fp32 features {cos:.5f}")


if __name__ == "__main__":
    main()
