"""The two transfers of the finetune issue: every PEFT method, 16 shots and the full train split,
3 seeds, through ``fmlab.experiments.finetune`` (the code behind ``fmlab finetune``).

- ``resnet56_cifar`` (CIFAR-10 weights) → MNIST, digits as 3-channel 32×32 (the backbone's
  preprocessing repeats the grey channel and resizes 28→32); augmentation pad-and-crop, no flips;
- ``vit_tiny_cifar`` → CIFAR-10, random init unless ``--vit-weights`` gives an encoder file (e.g.
  ``encoder.safetensors`` from ``fmlab pretrain``); crop + flip. VPT runs on the ViT only.

    FMLAB_DATA=/work/shared/data python benchmarks/finetune_runs.py --smoke     # a few minutes on a loaded 2-core box
    FMLAB_DATA=/work/shared/data python benchmarks/finetune_runs.py --out runs/finetune

The full run uses the per-method step budgets in ``BUDGETS`` (recommended for 2 CPU cores; the
smoke prints seconds per optimiser step so they can be re-derived). It prints one table of test
accuracy (mean ± std over seeds), trainable parameters, seconds per run and peak memory per
(transfer, method, shots), and the machine it ran on.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from fmlab.experiments.finetune import FinetuneConfig, run_finetune

RESNET56 = "weights/resnet_cifar10/resnet56-4bfd9763.th"
# optimiser steps per run: (16 shots, full train split), batch 64
BUDGETS = {
    "full": (300, 3000), "linear": (300, 1500), "bitfit": (300, 3000), "lora": (300, 3000),
    "svfit": (300, 3000), "pela": (300, 3000), "vpt": (300, 3000),
}
DISTILL_STEPS = (200, 1000)

# the methods this benchmark sweeps, in the order of its published table
METHOD_NAMES = ("full", "linear", "bitfit", "lora", "svfit", "pela", "vpt")


def machine() -> str:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    return (f"{platform.platform()} | python {platform.python_version()} | torch "
            f"{torch.__version__} | {os.cpu_count()} CPUs | torch threads "
            f"{torch.get_num_threads()} | device {dev} | load avg {load}")


def transfers(root: Path, vit_weights: str | None) -> list[dict]:
    return [
        {"key": "resnet56", "name": "resnet56→MNIST", "backbone": "resnet56_cifar", "weights": str(root / RESNET56),
         "data": "mnist", "augment": "crop",
         "methods": [m for m in METHOD_NAMES if m != "vpt"]},
        {"key": "vit", "name": "vit_tiny→CIFAR-10", "backbone": "vit_tiny_cifar", "weights": vit_weights,
         "data": "cifar10", "augment": "crop_flip", "methods": list(METHOD_NAMES)},
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/finetune_bench")
    ap.add_argument("--smoke", action="store_true",
                    help="1 seed, 16 shots, 2 steps, 100 test images: checks the pipeline, "
                         "measures seconds per step")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--shots", default="16,all")
    ap.add_argument("--methods", default=None, help="comma list (default: all)")
    ap.add_argument("--vit-weights", default=None)
    ap.add_argument("--max-test", type=int, default=None)
    ap.add_argument("--steps", default=None,
                    help="override every method's budget: '16:STEPS,all:STEPS' (distillation "
                         "for PELA gets a third of it)")
    ap.add_argument("--transfers", default="resnet56,vit", help="comma list: resnet56, vit")
    ap.add_argument("--set", dest="sets", action="append", default=[],
                    help="extra --set override for every run, e.g. trainer.bf16=true")
    args = ap.parse_args()
    step_override = None
    if args.steps:
        step_override = {k: int(v) for k, v in (x.split(":") for x in args.steps.split(","))}
    root = os.environ.get("FMLAB_DATA")
    if not root:
        raise SystemExit("set FMLAB_DATA to the data root (MNIST, CIFAR-10, ResNet-56 weights)")
    print(machine())
    seeds = [1] if args.smoke else [int(s) for s in args.seeds.split(",")]
    shots: list[int | str] = [16] if args.smoke else [
        s if s == "all" else int(s) for s in args.shots.split(",")]
    max_test = 100 if args.smoke else args.max_test
    rows = []
    for tr in transfers(Path(root), args.vit_weights):
        if tr["key"] not in args.transfers.split(","):
            continue
        for variant in tr["methods"] + ["pela_nodistill"]:
            # pela_nodistill: PELA's truncated SVD fine-tuned without the distillation stage
            method = "pela" if variant == "pela_nodistill" else variant
            if args.methods and variant not in args.methods.split(","):
                continue
            for k in shots:
                full = k == "all"
                steps = 2 if args.smoke else (step_override[str(k)] if step_override
                                              else BUDGETS[method][full])
                dsteps = 2 if args.smoke else (steps // 3 if step_override
                                               else DISTILL_STEPS[full])
                if variant == "pela_nodistill":
                    dsteps = 0
                overrides = [f"trainer.max_steps={steps}", f"augment={tr['augment']}",
                             f"distill_steps={dsteps}", *args.sets]
                if args.smoke:
                    overrides.append("distill_images=256")
                cfg = FinetuneConfig(
                    backbone=tr["backbone"], weights=tr["weights"], data=tr["data"],
                    out=Path(args.out) / tr["backbone"] / variant, methods=[method], shots=[k],
                    seeds=seeds, overrides=overrides, max_test=max_test, data_root=root,
                    db=Path(args.out) / "fmlab.db")
                t0 = time.perf_counter()
                recs = run_finetune(cfg)
                wall = time.perf_counter() - t0
                acc = np.array([r["accuracy"] for r in recs]) * 100
                step_s = np.mean([r["train_seconds"] / max(r["steps"], 1) for r in recs])
                rows.append([tr["name"], variant, str(k), f"{acc.mean():.2f} ± {acc.std():.2f}",
                             f"{recs[0]['trainable_parameters']:,}",
                             f"{np.mean([r['seconds'] for r in recs]):.1f}",
                             f"{step_s:.3f}", f"{np.mean([r['peak_memory_mb'] for r in recs]):.0f}",
                             f"{wall:.1f}"])
                print(json.dumps({"transfer": tr["name"], "method": variant, "shots": k,
                                  "accuracy": acc.tolist(), "s_per_step": round(step_s, 4)}),
                      flush=True)
    head = ["transfer", "method", "shots", "test acc %", "trainable", "s/run", "s/step",
            "peak MB", "wall s"]
    print()
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print(f"\nseeds {seeds}, test images {max_test or 'all'}; memory: "
          f"{'CUDA max allocated' if torch.cuda.is_available() else 'CPU peak RSS delta (VmHWM)'}")


if __name__ == "__main__":
    main()
