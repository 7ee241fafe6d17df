"""MNIST reference points for FID with LeNet-5 features (``lenet5_mnist``, 84-d f6 after ReLU).

Reproduces the two reference values of the issue, 10,000 samples per side:
- MNIST test vs 10,000 MNIST train images: FID ~ 1.2;
- the pretrained MLP-GAN ``G--300.ckpt`` (z ~ N(0, I) 64-d, tanh output in [-1, 1], quantised to
  uint8 by rounding) vs MNIST test: FID ~ 125.6.
It prints which train subset (the first 10k or random 10k with a seed) and which generator seed
gives which value, so the choice behind a quoted number is explicit.

    FMLAB_DATA=/work/shared/data python benchmarks/mnist_fid_reference.py [--seeds 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fmlab.metrics import create_extractor, fid, kid, metric_protocol, to_uint8

N = 10_000


def mlp_generator() -> nn.Sequential:
    """The MLP-GAN generator's layer list (parameter names 0/2/4 match the checkpoint)."""
    return nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                         nn.Linear(256, 784), nn.Tanh())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3, help="train-subset and generator seeds 0..S-1")
    args = ap.parse_args()
    root = Path(os.environ.get("FMLAB_DATA", "/work/shared/data"))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}, "
          f"torch threads {torch.get_num_threads()}, torch {torch.__version__}")
    ext = create_extractor(
        "lenet5_mnist", weights=root / "weights/mnist_small/lenet_epoch=12_test_acc=0.991.pth")
    data = np.load(root / "mnist/mnist.npz")
    t0 = time.perf_counter()
    test_f = ext(data["x_test"])
    print(f"extracted 10,000 test features in {time.perf_counter() - t0:.1f} s")

    print("\n[MNIST test vs 10,000 MNIST train]  reference value ~1.2")
    print(f"  first 10k train          FID {fid(test_f, ext(data['x_train'][:N])):.4f}")
    for s in range(args.seeds):
        idx = np.sort(np.random.default_rng(s).choice(len(data["x_train"]), N, replace=False))
        print(f"  random 10k train seed={s}  FID {fid(test_f, ext(data['x_train'][idx])):.4f}")

    print("\n[MLP-GAN G--300 (10,000 samples, uint8 by rounding) vs MNIST test]  reference ~125.6")
    gen = mlp_generator()
    gen.load_state_dict(torch.load(root / "weights/mnist_small/G--300.ckpt", map_location="cpu",
                                   weights_only=True))
    gen.eval()
    for s in range(args.seeds):
        z = torch.randn(N, 64, generator=torch.Generator().manual_seed(s))
        with torch.no_grad():
            out = gen(z).view(N, 1, 28, 28)
            # For comparison only: the same samples left in float (no uint8 rounding), resized
            # and fed to the network exactly as the extractor's preprocessing would.
            x01 = F.interpolate((out + 1) / 2, size=(32, 32), mode="bilinear",
                                align_corners=False)
            float_f = ext.net(x01)[0].double().numpy()
        fake_f = ext(to_uint8(out[:, 0]))
        k = kid(test_f, fake_f, subsets=100, subset_size=1000, seed=0)
        print(f"  z seed={s} (torch.Generator().manual_seed)  FID {fid(test_f, fake_f):.4f}  "
              f"KID {k.mean:.4f} +- {k.std:.4f}  (float, unquantised: FID "
              f"{fid(test_f, float_f):.4f})")
    proto = metric_protocol(ext, n_real=N, n_fake=N, reference="mnist", split="test", seed=0)
    print("\nprotocol:", {k: proto[k] for k in ("extractor", "weights_sha256", "resize",
                                                   "input_size", "n_real", "n_fake")})


if __name__ == "__main__":
    main()
