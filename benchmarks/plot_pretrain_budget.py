"""Gain over random init against training budget, one line per objective.

Reads the ``results.json`` files that ``benchmarks/pretrain_runs.py`` writes (any number, any
budgets) and plots, per objective, the primary metric's gain over the same architecture at random
init (kNN, or the linear probe for MAE / MP3) against the CPU-minutes the runs used: mean ± std
over the seeds of each (objective, steps) group. A dashed line marks the issue's +10-point target.

    python benchmarks/plot_pretrain_budget.py docs/results/pretrain_15min/*_results.json \\
        docs/results/pretrain_equal_budget/results.json --out gain_vs_budget.png
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

from pretrain_runs import LINEAR_PRIMARY  # the sibling script that wrote the results

from fmlab.utils.io import atomic_write


def groups(paths: list[Path], skip: set[tuple[str, str]]) -> dict[str, list[tuple]]:
    """objective -> sorted [(cpu_min mean, gain mean, gain std, n)] over (objective, steps)."""
    runs: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for path in paths:
        for row in json.loads(path.read_text()):
            if (row["objective"], path.as_posix()) in skip:
                continue
            runs[(row["objective"], row["steps"])].append(row)
    out: dict[str, list[tuple]] = defaultdict(list)
    for (obj, _), rows in runs.items():
        metric = "linear" if obj in LINEAR_PRIMARY else "knn"
        gains = [100 * (r["pretrained"][metric] - r["random"][metric]) for r in rows]
        out[obj].append((statistics.mean(r["cpu_min"] for r in rows), statistics.mean(gains),
                         statistics.stdev(gains) if len(gains) > 1 else 0.0, len(gains)))
    return {k: sorted(v) for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results", nargs="+", type=Path)
    ap.add_argument("--skip", action="append", default=[], metavar="OBJECTIVE=FILE",
                    help="leave one objective of one file out (e.g. a run with an old config)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    skip = {(o, Path(f).as_posix()) for o, f in (s.split("=", 1) for s in args.skip)}

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    for obj, pts in sorted(groups(args.results, skip).items()):
        x, y, e, n = zip(*pts)
        label = f"{obj} ({'linear' if obj in LINEAR_PRIMARY else 'kNN'}; seeds {'/'.join(map(str, n))})"
        ax.errorbar(x, y, yerr=e, marker="o", capsize=3, label=label)
    ax.axhline(10, color="grey", ls="--", lw=1)
    ax.axhline(0, color="black", lw=0.5)
    ax.set_xlabel("CPU-minutes used per run (1 thread)")
    ax.set_ylabel("gain over random init (points)")
    ax.set_title("Frozen-feature gain vs pre-training budget (JPEG CIFAR-10)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: no point hidden
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_write(args.out, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
