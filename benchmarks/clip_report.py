"""Tables (mean ± std over seeds) and the CoOp accuracy-vs-shots plot from clip_runs.py's output.

    python benchmarks/clip_runs.py --budget full > clip_full.log
    python benchmarks/clip_report.py clip_full.log --plot docs/results/clip_lit/coop_vs_prompt.png
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np

LINE = re.compile(r"^\[(?P<kind>[^\]]+)\] (?:seed (?P<seed>\d+): )?(?P<json>\{.*\})\s*$")


def parse(path: Path) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for line in path.read_text().splitlines():
        m = LINE.match(line)
        if m:
            rec = json.loads(m["json"])
            if m["seed"] is not None:
                rec["seed"] = int(m["seed"])
            out.setdefault(m["kind"], []).append(rec)
    return out


def ms(values, scale: float = 100.0) -> str:
    v = np.asarray(values, dtype=float) * scale
    return f"{v.mean():.1f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("log")
    ap.add_argument("--plot", default=None)
    a = ap.parse_args()
    runs = parse(Path(a.log))
    lit = runs.get("lit cifar5->unseen5", [])
    if lit:
        print(f"LiT (seeds {[r['seed'] for r in lit]}): zero-shot acc@1 % on the 5 unseen classes "
              f"{ms([r['unseen_acc1'] for r in lit])}, on the 5 base classes "
              f"{ms([r['base_acc1'] for r in lit])}, on all 10 {ms([r['all10_acc1'] for r in lit])}"
              f" (chance 20 / 20 / 10); train {np.mean([r['train_s'] for r in lit]):.0f} s/seed")
    coco = runs.get("coco-mini retrieval", [])
    if coco:
        keys = ["image_to_text_R@1", "image_to_text_R@5", "text_to_image_R@1",
                "text_to_image_R@5", "text_to_image_R@10"]
        print("\n| COCO-mini val | " + " | ".join(keys) + " |")
        print("|---|" + "---|" * len(keys))
        for label, pre in (("trained here", ""), ("before training", "untrained_"),
                           ("chance", "chance_")):
            print(f"| {label} | " + " | ".join(ms([r[pre + k] for r in coco]) for k in keys) + " |")
    coop = runs.get("coop vs hand prompt", [])
    if coop:
        shots = sorted({r["shots"] for r in coop})
        print("\n| shots | CoOp (M=16) | hand-written prompt | seeds |")
        print("|---|---|---|---|")
        rows = []
        for k in shots:
            sel = [r for r in coop if r["shots"] == k]
            rows.append((k, [r["coop_acc1"] for r in sel], [r["hand_prompt_acc1"] for r in sel]))
            print(f"| {k} | {ms(rows[-1][1])} | {ms(rows[-1][2])} | {len(sel)} |")
        if a.plot:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt

            fig, ax = plt.subplots(figsize=(5.5, 3.8))
            for i, (label, style) in enumerate((("CoOp (16 learnt context vectors)", "o-"),
                                                ("hand-written prompt", "s--"))):
                m = [100 * np.mean(r[1 + i]) for r in rows]
                s = [100 * np.std(r[1 + i], ddof=1) if len(r[1 + i]) > 1 else 0 for r in rows]
                ax.errorbar(shots, m, yerr=s, fmt=style, capsize=3, label=label)
            ax.set_xscale("log", base=2)
            ax.set_xticks(shots, [str(k) for k in shots])
            ax.set_xlabel("training images per class")
            ax.set_ylabel("CIFAR-10 (JPEG copy) test acc@1 (%)")
            ax.set_title("LiT ResNet-20 + locked MiniLM: CoOp vs prompt", fontsize=10)
            ax.legend(fontsize=8)
            ax.grid(alpha=0.3)
            fig.tight_layout()
            Path(a.plot).parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(a.plot, dpi=120)
            print(f"\nwrote {a.plot}")


if __name__ == "__main__":
    main()
