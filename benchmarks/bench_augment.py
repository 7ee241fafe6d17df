"""SimCLR augmentation throughput: fmlab's batched pipeline vs torchvision v2 per sample.

Both produce two normalised views per image from 32x32 uint8 CIFAR-like input with
RRC scale (0.08, 1) + flip + colour jitter (0.4, 0.4, 0.4, 0.1) p=0.8 + grayscale p=0.2.
- fmlab: ``SimCLR.default_transform(32)`` on whole batches in the main process (torch threads
  as given by --threads; both 1 and 2 are measured by default);
- torchvision: ``transforms.v2`` applied per sample inside a ``DataLoader`` with 2 workers, on
  uint8 CHW tensors and on PIL images (the faster one is the reference).
Rounds alternate between the methods so background load hits both alike; the median of the
rounds is reported, in images per second (each image = two views), and, as a load-independent
check, images per CPU-second (all processes involved: main process and loader workers).

    python benchmarks/bench_augment.py            # ~1-2 minutes on 2 cores

The loaders use prefetch_factor=1; before each timed window their ready batches are drained and
after it the benchmark waits until the workers are idle again, so neither method's window
contains the other's background work.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
import torch


def load_images(n: int) -> tuple[np.ndarray, str]:
    root = os.environ.get("FMLAB_DATA")
    path = os.path.join(root, "cifar10", "cifar10_jpeg.npz") if root else ""
    if path and os.path.exists(path):
        with np.load(path) as z:
            x = z["x_test"][:n]
        return np.ascontiguousarray(x), f"CIFAR-10 test images ({path})"
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), "random uint8 32x32x3"


class _PerSample(torch.utils.data.Dataset):
    def __init__(self, images: np.ndarray, pil: bool) -> None:
        import torchvision.transforms.v2 as T

        self.images, self.pil = images, pil
        steps = [T.RandomResizedCrop(32, scale=(0.08, 1.0), antialias=True),
                 T.RandomHorizontalFlip(),
                 T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
                 T.RandomGrayscale(0.2)]
        if pil:
            steps.append(T.PILToTensor())
        steps += [T.ToDtype(torch.float32, scale=True),
                  T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))]
        self.tf = T.Compose(steps)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        if self.pil:
            from PIL import Image

            img = Image.fromarray(self.images[i])
        else:
            img = torch.from_numpy(self.images[i]).permute(2, 0, 1)
        return self.tf(img), self.tf(img)


class _Endless:
    """Batches from a persistent-worker DataLoader forever; knows its worker processes."""

    def __init__(self, loader) -> None:
        self.loader = loader
        self.it = iter(loader)

    def __next__(self):
        try:
            return next(self.it)
        except StopIteration:
            self.it = iter(self.loader)
            return next(self.it)

    def drain(self, n: int) -> None:
        """Consume what the workers prefetched, so a timed window sees production, not stock."""
        for _ in range(n):
            next(self)

    def wait_idle(self, poll_s: float = 0.2, timeout_s: float = 60.0) -> None:
        """Return once the workers have refilled their prefetch queue and stopped computing."""
        t_end = time.perf_counter() + timeout_s
        last = self.cpu_seconds()
        while time.perf_counter() < t_end:
            time.sleep(poll_s)
            now = self.cpu_seconds()
            if now - last < 0.01:
                return
            last = now

    def cpu_seconds(self) -> float:
        import psutil

        total = 0.0
        for w in getattr(self.it, "_workers", []):
            t = psutil.Process(w.pid).cpu_times()
            total += t.user + t.system
        return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--batches", type=int, default=8, help="batches per method per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, nargs="+", default=[1],
                    help="torch threads for the batched pipeline (2 threads on a busy 2-core box "
                         "spin-wait badly)")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    from fmlab.pretrain import SimCLR

    n = args.batch_size * args.batches
    images, what = load_images(max(n, 10000))
    images_t = torch.from_numpy(images)
    print(f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, torch {torch.__version__}")
    print(f"input: {what}; batch {args.batch_size}, {args.batches} batches x {args.rounds} "
          f"rounds per method, two views per image")

    transform = SimCLR.default_transform(32)
    gen = torch.Generator().manual_seed(0)
    idx_gen = torch.Generator().manual_seed(1)

    count = args.batches * args.batch_size

    def ours(threads: int) -> tuple[float, float]:
        torch.set_num_threads(threads)
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(args.batches):
            idx = torch.randint(0, len(images_t), (args.batch_size,), generator=idx_gen)
            out = transform({"images": images_t[idx]}, gen)
            assert out["views"][1].shape == (args.batch_size, 3, 32, 32)
        return count / (time.perf_counter() - t0), count / (time.process_time() - c0)

    loaders = {}
    for pil in (False, True):
        dl = torch.utils.data.DataLoader(
            _PerSample(images, pil), batch_size=args.batch_size, shuffle=True,
            num_workers=args.workers, persistent_workers=True, prefetch_factor=1,
            drop_last=True)
        loaders["torchvision-" + ("pil" if pil else "tensor")] = _Endless(dl)
    for it in loaders.values():  # start the workers outside the timed region
        next(it)
        it.wait_idle()

    def baseline(name: str) -> tuple[float, float]:
        it = loaders[name]
        it.drain(args.workers)  # prefetch_factor=1: one ready batch per worker
        t0, c0, w0 = time.perf_counter(), time.process_time(), it.cpu_seconds()
        for _ in range(args.batches):
            v1, _ = next(it)
            assert v1.shape == (args.batch_size, 3, 32, 32)
        wall = time.perf_counter() - t0
        cpu = time.process_time() - c0 + it.cpu_seconds() - w0
        it.wait_idle()  # the refill must not run during the next measurement
        return count / wall, count / cpu

    results: dict[str, list[tuple[float, float]]] = {}
    ours(1)  # warm-up
    for _ in range(args.rounds):
        for th in args.threads:
            results.setdefault(f"fmlab-batched-{th}thread", []).append(ours(th))
        for name in loaders:
            torch.set_num_threads(1)
            results.setdefault(name, []).append(baseline(name))

    med = {k: statistics.median(r[0] for r in v) for k, v in results.items()}
    per_cpu = {k: statistics.median(r[1] for r in v) for k, v in results.items()}
    for k, v in med.items():
        walls = [r[0] for r in results[k]]
        print(f"{k:28s} {v:9.0f} img/s  (rounds: {min(walls):.0f}-{max(walls):.0f})  "
              f"{per_cpu[k]:8.0f} img/CPU-s")
    ref_name = max((k for k in med if k.startswith("torchvision")), key=med.get)
    best_name = max((k for k in med if k.startswith("fmlab")), key=med.get)
    for k, v in med.items():
        if k.startswith("fmlab"):
            print(f"ratio {k} / {ref_name}: {v / med[ref_name]:.2f}x")
    print(f"best ratio: {med[best_name] / med[ref_name]:.2f}x ({best_name} vs {ref_name})")
    cpu_ref = max((k for k in per_cpu if k.startswith("torchvision")), key=per_cpu.get)
    cpu_best = max((k for k in per_cpu if k.startswith("fmlab")), key=per_cpu.get)
    print(f"per-CPU-second ratio: {per_cpu[cpu_best] / per_cpu[cpu_ref]:.2f}x "
          f"({cpu_best} vs {cpu_ref})")


if __name__ == "__main__":
    main()
