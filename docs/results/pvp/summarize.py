"""Table (mean ± std over seeds, paired PVP − random-init differences) and accuracy-vs-shots plot
of one PVP comparison.

Usage: python docs/results/pvp/summarize.py RANDOM_DIRS PVP_DIRS OUT_DIR [METHOD [TAG [TITLE]]]
(comma lists; RANDOM: `fmlab finetune --method linear,METHOD`, PVP: `--method METHOD --init-from
...`; the seeds of several directories are pooled). METHOD defaults to lora; TAG names the outputs
(`table_TAG.md`, `accuracy_vs_shots_TAG.png`; default: `table.md`, `accuracy_vs_shots.png`); TITLE
heads the plot (default: the LoRA-on-EuroSAT run's).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

NAMES = {"lora": "LoRA", "vpt": "VPT"}


def load(path: Path, tag: str | None = None) -> dict[tuple[str, int], dict[int, float]]:
    """(arm, shots) -> {seed: test accuracy %}."""
    out: dict[tuple[str, int], dict[int, float]] = {}
    for d in str(path).split(","):
        for r in json.loads((Path(d) / "results.json").read_text()):
            arm = tag or r["method"]
            out.setdefault((arm, int(r["shots"])), {})[int(r["seed"])] = 100 * r["accuracy"]
    return out


def table(acc: dict, method: str, shots: list[int]) -> str:
    pvp, name = f"pvp_{method}", NAMES.get(method, method)
    lines = [f"| shots | seeds | linear probe | {name} (random init) | PVP {name} | PVP − {name} (paired) "
             "| PVP − linear (paired) |", "|---|---|---|---|---|---|---|"]
    for k in shots:
        cells = [str(len(acc[pvp, k]))]
        for a in ("linear", method, pvp):
            v = np.array(list(acc[a, k].values()))
            cells.append(f"{v.mean():.1f} ± {v.std():.1f}")
        for base in (method, "linear"):
            seeds = sorted(acc[pvp, k])
            d = np.array([acc[pvp, k][s] - acc[base, k][s] for s in seeds])
            cells.append(f"{d.mean():+.1f} ± {d.std():.1f}")
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(acc: dict, method: str, shots: list[int], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pvp, name = f"pvp_{method}", NAMES.get(method, method)
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    labels = {"linear": "linear probe", method: f"{name}, random init", pvp: f"PVP {name}"}
    for a in ("linear", method, pvp):
        m = [np.mean(list(acc[a, k].values())) for k in shots]
        s = [np.std(list(acc[a, k].values())) for k in shots]
        ax.errorbar(shots, m, yerr=s, marker="o", capsize=3, label=labels[a])
    ax.set_xscale("log", base=2)
    ax.set_xticks(shots, [str(k) for k in shots])
    ax.set_xlabel("shots per class")
    ax.set_ylabel("test accuracy %")
    seeds = ", ".join(f"{len(acc[pvp, k])}" for k in shots)
    ax.set_title(f"{title}\nmean ± std over seeds ({seeds})", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    rand_dir, pvp_dir, out_dir = (Path(a) for a in sys.argv[1:4])
    method = sys.argv[4] if len(sys.argv) > 4 else "lora"
    tag = f"_{sys.argv[5]}" if len(sys.argv) > 5 else ""
    title = sys.argv[6] if len(sys.argv) > 6 else "resnet20_cifar on EuroSAT, 100 steps"
    acc = {**load(rand_dir), **load(pvp_dir, f"pvp_{method}")}
    shots = sorted({k for _, k in acc})
    text = table(acc, method, shots)
    print(text)
    (out_dir / f"table{tag}.md").write_text(text + "\n")
    plot(acc, method, shots, out_dir / f"accuracy_vs_shots{tag}.png", title)


if __name__ == "__main__":
    main()
