"""Curves of conditional MNIST GAN runs: FID, intra-FID and per-class recall against CPU-minutes.

Reads the run directories ``benchmarks/gan_runs.py`` leaves (``OUT/<config>/seed<S>/metrics.jsonl``;
run it with ``--eval-every N`` so there is a curve) and draws one panel per metric, one line per
run, coloured by config. Nothing is trained or evaluated here.

    python benchmarks/plot_gan_cond.py --out runs/gan15 --configs ac,adc \
        --png docs/results/gan_mnist_15min/cond_curves.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fmlab.engine.logger import read_metrics
from fmlab.utils.io import atomic_write

PANELS = (("fid", "FID-LeNet (lower is better)", True),
          ("ifid", "intra-FID, mean of 10 classes (lower)", True),
          ("class_recall", "label recall, LeNet-5 (higher; chance 0.1)", False))


def curves(run_dir: Path) -> dict[str, list[tuple[float, float]]]:
    """metric → [(training CPU-minutes, value)] from one run's evaluation records."""
    out: dict[str, list[tuple[float, float]]] = {k: [] for k, _, _ in PANELS}
    for r in read_metrics(run_dir):
        if "eval" not in r or "train_cpu_s" not in r:
            continue
        for k in out:
            if k in r["eval"]:
                out[k].append((r["train_cpu_s"] / 60.0, float(r["eval"][k])))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="the --out directory of benchmarks/gan_runs.py")
    ap.add_argument("--configs", default="ac,adc")
    ap.add_argument("--png", required=True)
    args = ap.parse_args()

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [c for c in args.configs.split(",") if c]
    fig, axes = plt.subplots(1, len(PANELS), figsize=(5 * len(PANELS), 3.8))
    found = 0
    for i, name in enumerate(names):
        runs = sorted((Path(args.out) / name).glob("seed*"))
        found += len(runs)
        for j, run in enumerate(runs):
            for ax, (key, _, _) in zip(axes, PANELS):
                pts = curves(run)[key]
                if pts:
                    x, y = zip(*pts)
                    ax.plot(x, y, "o-", color=f"C{i}", ms=3, lw=1,
                            label=f"{name} ({len(runs)} seeds)" if j == 0 else None)
    if not found:
        raise SystemExit(f"no runs of {names} under {args.out}")
    for ax, (_, label, log) in zip(axes, PANELS):
        if log:
            ax.set_yscale("log")
        ax.set_xlabel("training CPU-minutes (1 thread)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("Conditional MNIST GANs during training (EMA generator, 10,000 samples)")
    fig.tight_layout()
    Path(args.png).parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(args.png, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)
    print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
