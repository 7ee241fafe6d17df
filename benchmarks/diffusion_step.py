"""Training-step cost of the 28×28 diffusion UNet: KIND layers vs dense, and a learngene transfer.

Side by side in one process, one thread, interleaved rounds (so load changes hit every variant):
CPU seconds per optimiser step (forward + backward + AdamW) at batch 32, ch 16 and 32.

    OMP_NUM_THREADS=1 python benchmarks/diffusion_step.py [--rounds 3] [--steps 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from fmlab.diffusion import DiffusionObjective, LayerFactory, NoiseSchedule, UNet
from fmlab.experiments.diffusion_transfer import learngene_net


def variants(ch: int) -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    kind = UNet(LayerFactory("kind", 16, 2, 5), ch=ch)
    meta = {"layers": "kind", "ch": ch, "learngenes": 16, "tailors": 2, "classes": list(range(5))}
    return {f"dense ch{ch}": UNet(LayerFactory("dense", num_classes=5), ch=ch),
            f"kind ch{ch}": kind,
            f"kind ch{ch} learngene transfer": learngene_net(kind, meta, 5, 0.1, 0)}


def step_cost(net: torch.nn.Module, steps: int) -> float:
    obj = DiffusionObjective(net, NoiseSchedule("cosine", 200), 0.1)
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], 1e-3)
    batch = {"images": torch.randn(32, 1, 28, 28), "labels": torch.randint(0, 5, (32,))}
    t0 = time.process_time()
    for _ in range(steps):
        loss, _ = obj(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return (time.process_time() - t0) / steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=5)
    a = p.parse_args()
    torch.set_num_threads(1)
    nets = {**variants(16), **variants(32)}
    for net in nets.values():
        step_cost(net, 1)  # warm-up
    times: dict[str, list[float]] = {k: [] for k in nets}
    for _ in range(a.rounds):
        for k, net in nets.items():
            times[k].append(step_cost(net, a.steps))
    for k, v in times.items():
        base = statistics.median(times[k.split(" ")[0].replace("kind", "dense") + " " + k.split(" ")[1]])
        print(f"{k:32s} {statistics.median(v) * 1000:7.1f} ms/step  ({statistics.median(v) / base:.2f}x dense)")


if __name__ == "__main__":
    main()
