"""Aggregate the AdvEncoder study (run.sh): mean ± std over attack seeds, a bar chart, δ pictures.

Usage: python docs/results/advencoder/aggregate.py RUNS_DIR OUT_DIR
Writes OUT_DIR/table.md, OUT_DIR/accuracy.png and OUT_DIR/deltas.png.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

CONFIGS = {"resnet20_hf": "ResNet-20 (shared weights), ℓ∞ 10/255, λ_hf=1",
           "resnet20_nohf": "ResNet-20 (shared weights), ℓ∞ 10/255, λ_hf=0",
           "simclr_vit_hf": "SimCLR ViT-tiny (pre-trained here), ℓ∞ 10/255, λ_hf=1",
           "resnet20_patch": "ResNet-20 (shared weights), patch 3% area, λ_hf=1"}


def load(runs: Path) -> dict:
    """{(config, source, method, condition): [accuracy per seed]} and the seeds seen."""
    acc: dict = {}
    for name in CONFIGS:
        for res in sorted((runs / name).glob("seed*/eval/results.json")):
            for r in json.loads(res.read_text()):
                key = (name, r["source"], r["method"], r["condition"])
                acc.setdefault(key, []).append(100 * r["accuracy"])
    return acc


def ms(v: list[float]) -> str:
    return f"{np.mean(v):.1f} ± {np.std(v, ddof=1) if len(v) > 1 else 0:.1f}"


def table(acc: dict) -> str:
    lines = ["| attack | source | probe | n seeds | clean | with δ | with noise | drop δ | drop noise |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for name, label in CONFIGS.items():
        for (n, src, m, cond), clean in acc.items():
            if n != name or cond != "clean":
                continue
            d, z = acc[(n, src, m, "delta")], acc[(n, src, m, "noise")]
            dd = [c - x for c, x in zip(clean, d)]
            dz = [c - x for c, x in zip(clean, z)]
            lines.append(f"| {label} | {src} | {m} | {len(clean)} | {ms(clean)} | {ms(d)} | "
                         f"{ms(z)} | **{ms(dd)}** | {ms(dz)} |")
    return "\n".join(lines)


def chart(acc: dict, path: Path) -> None:
    sources = sorted({k[1] for k in acc})
    fig, axes = plt.subplots(1, len(CONFIGS), figsize=(4.2 * len(CONFIGS), 3.6), sharey=True)
    for ax, (name, label) in zip(axes, CONFIGS.items()):
        x = np.arange(len(sources))
        for i, cond in enumerate(("clean", "delta", "noise")):
            vals = [acc.get((name, s, "linear", cond), [np.nan]) for s in sources]
            ax.bar(x + (i - 1) * 0.27, [np.mean(v) for v in vals], 0.27,
                   yerr=[np.std(v) for v in vals], label={"delta": "with δ"}.get(cond, cond))
        ax.set_xticks(x, sources)
        ax.set_title(label.replace(", ", "\n", 1), fontsize=8)
    axes[0].set_ylabel("16-shot linear probe accuracy (%)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def deltas(runs: Path, path: Path) -> None:
    fig, axes = plt.subplots(1, len(CONFIGS), figsize=(2.6 * len(CONFIGS), 3.3))
    for ax, name in zip(axes, CONFIGS):
        f = runs / name / "seed1" / "delta.safetensors"
        if f.is_file():
            d = load_file(str(f))["delta"].permute(1, 2, 0).numpy()
            img = d if name.endswith("patch") else d / (2 * np.abs(d).max()) + 0.5
            ax.imshow(img.clip(0, 1), interpolation="nearest")
        ax.set_title(name + "\n(seed 1" + (")" if name.endswith("patch") else ", scaled)"),
                     fontsize=8)
        ax.axis("off")
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(path, dpi=110)


def main() -> None:
    runs, out = Path(sys.argv[1]), Path(sys.argv[2])
    acc = load(runs)
    (out / "table.md").write_text(table(acc) + "\n", encoding="utf-8")
    chart(acc, out / "accuracy.png")
    deltas(runs, out / "deltas.png")
    print(table(acc))


if __name__ == "__main__":
    main()
