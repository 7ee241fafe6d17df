"""Collect runs/darkside/*/report.json into summary.json and maps.png (mean ± std over seeds).

    python docs/results/darkside/aggregate.py [RUNS_DIR]   (default runs/darkside)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
ARMS = {"none": "photometric only", "translated": "+ translated night", "degraded": "+ true night (oracle)"}
KEYS = ("day_to_day", "night_to_day", "night_to_night")


def main(runs: Path) -> None:
    rows: dict[str, list[dict]] = {}
    for rep in sorted(runs.glob("*_s*/report.json")):
        r = json.loads(rep.read_text())
        rows.setdefault(r["positives"], []).append(r)
    summary = {"initial": json.loads((runs / "initial.json").read_text())["mAP"]
               if (runs / "initial.json").is_file() else None, "arms": {}}
    for arm, rs in rows.items():
        summary["arms"][arm] = {
            "seeds": sorted(r["seed"] for r in rs), "steps": rs[0]["step"],
            "train_cpu_s_mean": float(np.mean([r["train_cpu_s"] for r in rs])),
            "per_seed": {str(r["seed"]): r["mAP"] for r in rs},
            **{k: {"mean": float(np.mean([r["mAP"][k] for r in rs])),
                   "std": float(np.std([r["mAP"][k] for r in rs], ddof=1)) if len(rs) > 1 else 0.0}
               for k in KEYS}}
    (HERE / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"| arm | seeds | {' | '.join(KEYS)} |\n|---|---|---|---|---|")
    if summary["initial"]:
        print("| pre-trained, no fine-tuning | - | " + " | ".join(
            f"{summary['initial'][k]:.4f}" for k in KEYS) + " |")
    for arm in ARMS:
        if arm in summary["arms"]:
            a = summary["arms"][arm]
            print(f"| {ARMS[arm]} | {len(a['seeds'])} | " + " | ".join(
                f"{a[k]['mean']:.4f} ± {a[k]['std']:.4f}" for k in KEYS) + " |")
    plot(summary)


def plot(summary: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = [a for a in ARMS if a in summary["arms"]]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    width = 0.8 / (len(arms) + 1)
    x = np.arange(len(KEYS))
    if summary["initial"]:
        ax.bar(x, [summary["initial"][k] for k in KEYS], width, label="pre-trained", color="0.7")
    for i, arm in enumerate(arms, 1):
        a = summary["arms"][arm]
        ax.bar(x + i * width, [a[k]["mean"] for k in KEYS], width,
               yerr=[a[k]["std"] for k in KEYS], capsize=3, label=ARMS[arm])
    ax.set_xticks(x + width * len(arms) / 2, [k.replace("_to_", " → ") for k in KEYS])
    ax.set_ylabel("class-level mAP")
    ax.set_title("Dark Side augmentation, CIFAR-10 (JPEG copy), 3 seeds, mean ± std")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(HERE / "maps.png", dpi=110)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/darkside"))
