"""Trainable-parameter counts of fmlab.peft methods on a CIFAR ResNet-56 and a timm ViT-Tiny.

Shows: SVFit trains ≥10× fewer parameters than LoRA r=8 on the same layers; PELA at compression
ratio 2 removes ≥ 1/3 of the targeted layers' weights. Also reports BitFit / linear / VPT counts and
the wall time of each ``apply`` (SVDs included).

    python benchmarks/bench_peft_params.py            # FMLAB_DATA set → the real ResNet-56 weights

SVFit's rank depends on the spectrum: with ``FMLAB_DATA`` set the ResNet-56 uses its trained CIFAR-10
weights; the ViT-Tiny is random-init (no weights offline), whose flat spectra need near-full rank
for 99% energy, so its SVFit count is an upper bound.
"""

from __future__ import annotations

import copy
import os
import platform
import time
from pathlib import Path

import torch

import fmlab.peft as fp
from fmlab.models import create_backbone

RESNET_W = "weights/resnet_cifar10/resnet56-4bfd9763.th"
VIT_LAYERS = ["*attn.qkv", "*attn.proj", "*mlp.fc1", "*mlp.fc2"]
RESNET_LAYERS = ["trunk.*conv*"]


def _machine() -> str:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"{platform.platform()} | python {platform.python_version()} | torch {torch.__version__}"
            f" | {os.cpu_count()} CPUs | torch threads {torch.get_num_threads()} | load avg {load}")


def _apply(model: torch.nn.Module, method: str, targets, **kw) -> tuple[torch.nn.Module, float]:
    m = copy.deepcopy(model)
    t0 = time.perf_counter()
    fp.apply(m, method, targets, **kw)
    return m, time.perf_counter() - t0


def _count_targets(model: torch.nn.Module, patterns) -> int:
    m, _ = _apply(model, "full", patterns)
    return fp.trainable_parameters(m)


def report(name: str, model: torch.nn.Module, layers: list[str], extra: dict) -> None:
    total = sum(p.numel() for p in model.parameters())
    print(f"\n== {name}: {total:,} parameters; targets {layers}")
    rows = []
    lora, t_lora = _apply(model, "lora", layers, r=8, alpha=8)
    svfit, t_svfit = _apply(model, "svfit", layers, energy=0.99)
    ranks = [s["rank"] for s in fp.adapter_stages(svfit)[0]["info"]["slots"]]
    n_lora, n_svfit = fp.trainable_parameters(lora), fp.trainable_parameters(svfit)
    rows.append(("targeted layers (full FT of them)", _count_targets(model, layers), None))
    rows.append(("lora r=8", n_lora, t_lora))
    label = (f"svfit energy=0.99 ({len(ranks)} matrices, rank {min(ranks)}..{max(ranks)}, "
             f"mean {sum(ranks) / len(ranks):.1f})")
    rows.append((label, n_svfit, t_svfit))
    svfit8, t8 = _apply(model, "svfit", layers, rank=8)
    rows.append(("svfit rank=8", fp.trainable_parameters(svfit8), t8))
    for label, (method, kw) in extra.items():
        m, t = _apply(model, method, None, **kw)
        rows.append((label, fp.trainable_parameters(m), t))
    for label, n, t in rows:
        tt = "" if t is None else f"   apply {t:6.2f} s"
        print(f"  {label:<62} {n:>10,}{tt}")
    print(f"  LoRA r=8 / SVFit(0.99) trainable ratio: {n_lora / n_svfit:.1f}x  (need >= 10x)")
    pela, t_pela = _apply(model, "pela", layers, compression_ratio=2)
    sv = fp.parameter_savings(pela)
    print(f"  PELA ratio 2: targeted-layer params {sv['before']:,} -> {sv['after']:,}, removed "
          f"{sv['removed']:,} = {sv['removed'] / sv['before']:.1%} (need >= 33.3%); whole model "
          f"{total:,} -> {sum(p.numel() for p in pela.parameters()):,}; apply {t_pela:.2f} s")


def main() -> None:
    import peft  # noqa: F401  (import once before timing: it is slow the first time)

    print(_machine())
    torch.manual_seed(0)
    root = os.environ.get("FMLAB_DATA")
    wpath = Path(root) / RESNET_W if root else None
    weights = wpath if wpath is not None and wpath.is_file() else None
    resnet = create_backbone("resnet56_cifar", weights=weights)
    report(f"resnet56_cifar ({'trained weights' if weights else 'random init'})", resnet,
           RESNET_LAYERS, {"bitfit (whole net)": ("bitfit", {}),
                           "linear (head)": ("linear", {})})
    vit = create_backbone("timm:vit_tiny_patch16_224")
    report("timm:vit_tiny_patch16_224 (random init)", vit, VIT_LAYERS, {
        "bitfit (whole net)": ("bitfit", {}),
        "vpt shallow, 10 tokens": ("vpt", {"num_tokens": 10}),
        "vpt deep, 10 tokens": ("vpt", {"num_tokens": 10, "deep": True}),
    })
    print(f"\nend: load avg {', '.join(f'{x:.1f}' for x in os.getloadavg())} (apply times include "
          "SVDs; they swell on a shared machine)")


if __name__ == "__main__":
    main()
