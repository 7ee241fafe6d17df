"""Pictures of the PASS study: COCO-mini kept/dropped samples and the probe accuracies.

Usage::

    FMLAB_DATA=/work/shared/data python benchmarks/pass_plots.py --coco runs/pass_coco \\
        --results runs/pass/results.json --out docs/results/pass
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from fmlab.curate.people_filter import read_manifest  # noqa: E402
from fmlab.data import open_source  # noqa: E402
from fmlab.utils.io import atomic_path  # noqa: E402


def coco_grid(coco: Path, out: Path, per_row: int = 6) -> None:
    """Two rows of kept and two of dropped COCO-mini train images, the first reason as title."""
    recs = [r for r in read_manifest(coco / "manifest.jsonl") if r["split"] == "train"]
    imgs = open_source("coco_mini").split("train").images
    kept = [r for r in recs if r["kept"]][:2 * per_row]
    dropped = [r for r in recs if not r["kept"]][:2 * per_row]
    fig, axes = plt.subplots(4, per_row, figsize=(2.2 * per_row, 9.6))
    for ax, r in zip(axes.ravel(), kept + dropped):
        ax.imshow(imgs.get_batch([r["index"]])[0])
        ax.set_title("kept" if r["kept"] else r["reasons"][0].replace(" matches", ":"),
                     fontsize=8, color="green" if r["kept"] else "red")
        ax.axis("off")
    fig.suptitle("COCO-mini train: kept (rows 1-2) and dropped (rows 3-4) by `--drop people`")
    fig.tight_layout()
    with atomic_path(out / "coco_mini_kept_dropped.png") as p:
        fig.savefig(p, dpi=55, format="png")
    plt.close(fig)


def accuracy_bars(results: Path, out: Path) -> None:
    """Linear-probe and kNN accuracy, full vs filtered, overall / dropped / kept classes."""
    rows = json.loads(results.read_text())["rows"]
    groups = [("linear", "all 10"), ("linear_dropped_classes", "dropped (cat, dog)"),
              ("linear_kept_classes", "kept 8"), ("knn", "kNN all 10")]
    fig, ax = plt.subplots(figsize=(8, 4))
    x = np.arange(len(groups))
    for k, cond in enumerate(("full", "filtered")):
        vals = [[100 * r[g] for r in rows if r["condition"] == cond] for g, _ in groups]
        means = [statistics.mean(v) for v in vals]
        sds = [statistics.stdev(v) if len(v) > 1 else 0 for v in vals]
        ax.bar(x + (k - 0.5) * 0.38, means, 0.38, yerr=sds, capsize=3,
               label=f"pre-trained on {cond} CIFAR-10 (n={len(vals[0])} seeds)")
    rnd = results.parent / "random.json"
    if rnd.is_file():  # the same architecture at random init, probed the same way
        rr = json.loads(rnd.read_text())["rows"]
        for k, (g, _) in enumerate(groups):
            ax.hlines(statistics.mean(100 * r[g] for r in rr), k - 0.4, k + 0.4, colors="k",
                      linestyles="--", label="random init (3 seeds)" if k == 0 else None)
    ax.set_xticks(x, [lbl for _, lbl in groups])
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("SimCLR 60 steps x 64, probe on CIFAR-10 (JPEG copy); cat+dog = proxy 'people'")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(out / "probe_full_vs_filtered.png") as p:
        fig.savefig(p, dpi=90, format="png")
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--coco", default="runs/pass_coco")
    ap.add_argument("--results", default="runs/pass/results.json")
    ap.add_argument("--out", default="docs/results/pass")
    args = ap.parse_args()
    out = Path(args.out)
    coco_grid(Path(args.coco), out)
    if Path(args.results).is_file():
        accuracy_bars(Path(args.results), out)


if __name__ == "__main__":
    main()
