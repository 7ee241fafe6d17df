"""Table (mean ± std over seeds, paired PVP − random LoRA) and accuracy-vs-shots plot of the PVP runs.

Usage: python docs/results/pvp/summarize.py RANDOM_DIRS PVP_DIRS OUT_DIR
(comma lists; RANDOM: `fmlab finetune --method linear,lora`, PVP: `--method lora --init-from ...`;
the seeds of several directories are pooled).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def load(path: Path, tag: str | None = None) -> dict[tuple[str, int], dict[int, float]]:
    """(arm, shots) -> {seed: test accuracy %}."""
    out: dict[tuple[str, int], dict[int, float]] = {}
    for d in str(path).split(","):
        for r in json.loads((Path(d) / "results.json").read_text()):
            arm = tag or r["method"]
            out.setdefault((arm, int(r["shots"])), {})[int(r["seed"])] = 100 * r["accuracy"]
    return out


def main() -> None:
    rand_dir, pvp_dir, out_dir = (Path(a) for a in sys.argv[1:4])
    acc = {**load(rand_dir), **load(pvp_dir, "pvp_lora")}
    arms = ["linear", "lora", "pvp_lora"]
    shots = sorted({k for _, k in acc})
    lines = ["| shots | seeds | linear probe | LoRA (random init) | PVP LoRA | PVP − LoRA (paired) "
             "| PVP − linear (paired) |", "|---|---|---|---|---|---|---|"]
    for k in shots:
        cells = [str(len(acc["pvp_lora", k]))]
        for a in arms:
            v = np.array(list(acc[a, k].values()))
            cells.append(f"{v.mean():.1f} ± {v.std():.1f}")
        for base in ("lora", "linear"):
            seeds = sorted(acc["pvp_lora", k])
            d = np.array([acc["pvp_lora", k][s] - acc[base, k][s] for s in seeds])
            cells.append(f"{d.mean():+.1f} ± {d.std():.1f}")
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print(table)
    (out_dir / "table.md").write_text(table + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    labels = {"linear": "linear probe", "lora": "LoRA, random init", "pvp_lora": "PVP LoRA"}
    for a in arms:
        m = [np.mean(list(acc[a, k].values())) for k in shots]
        s = [np.std(list(acc[a, k].values())) for k in shots]
        ax.errorbar(shots, m, yerr=s, marker="o", capsize=3, label=labels[a])
    ax.set_xscale("log", base=2)
    ax.set_xticks(shots, [str(k) for k in shots])
    ax.set_xlabel("shots per class (EuroSAT, 10 classes)")
    ax.set_ylabel("test accuracy % (1000 images)")
    seeds = ", ".join(f"{len(acc['pvp_lora', k])}" for k in shots)
    ax.set_title(f"resnet20_cifar, 100 steps; mean ± std over seeds ({seeds})", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "accuracy_vs_shots.png", dpi=120)


if __name__ == "__main__":
    main()
