"""The issue's MNIST GAN experiments at a fixed CPU-minute budget, several seeds, one table.

Runs ``configs/gan/mnist_dcgan_<name>.yaml`` for each name and seed through the ``fmlab gan
train`` loop with ``cpu_minutes`` = the budget (process CPU time of the training steps only;
grids, checkpoints and metrics are not charged), then evaluates the final EMA generator
(10,000 samples vs the 10,000 MNIST test images, FID-LeNet, unless ``--eval-n``) and writes

    OUT/summary.md           FID-LeNet mean ± std over seeds, KID, intra-FID, label recall,
                             intra-class PRDC recall (when the config evaluates iprdc),
                             precision/recall, steps reached and CPU-minutes per config
    OUT/grids/<name>_seed<S>.png   the final sample grid of every run
    OUT/<name>/seed<S>/      the run directories (rerunning the script resumes / reuses them)

The full study is 15 CPU-minutes x 3 seeds per config (the lead schedules it):

    FMLAB_DATA=/work/shared/data python benchmarks/gan_runs.py --minutes 15 --seeds 0,1,2 \
        --out runs/gan_mnist

Smoke (about a minute): ``--minutes 0.1 --seeds 0 --configs hinge,adc --eval-n 1000``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

import torch

from fmlab.engine.logger import read_metrics
from fmlab.experiments.gan import load_gan_config, train_gan
from fmlab.utils.io import atomic_write

CONFIGS = ("hinge", "hinge_diffaug", "ac", "adc", "adaptivemix", "diffaug10", "nodiffaug10")
CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs" / "gan"


def mean_std(values: list[float], digits: int = 2) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def run_one(name: str, seed: int, args: argparse.Namespace) -> dict:
    run_dir = Path(args.out) / name / f"seed{seed}"
    overrides = [f"trainer.seed={seed}", "trainer.progress=false",
                 f"eval.every={args.eval_every}"]
    if args.steps:
        overrides += [f"trainer.max_steps={args.steps}", "cpu_minutes=0"]
    else:
        overrides += ["trainer.max_steps=1000000", f"cpu_minutes={args.minutes}"]
    if args.eval_n:
        overrides.append(f"eval.n={args.eval_n}")
    overrides += args.overrides
    cfg = load_gan_config(CONFIG_DIR / f"mnist_dcgan_{name}.yaml", overrides)
    t0 = time.perf_counter()
    res = train_gan(cfg, run_dir, resume=True)
    wall = time.perf_counter() - t0
    records = read_metrics(run_dir)
    evals = [r for r in records if "eval" in r]
    curve = [(r["step"], r.get("train_cpu_s", float("nan")) / 60, r["eval"]["fid"])
             for r in evals if "fid" in r["eval"]]
    grids = sorted((run_dir / "samples").glob("step_*.png"))
    if grids:
        dest = Path(args.out) / "grids" / f"{name}_seed{seed}.png"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(grids[-1], dest)
    out = {"name": name, "seed": seed, "step": res.step, "cpu_min": res.train_cpu_s / 60,
           "wall_s": wall, "curve": curve, **(evals[-1]["eval"] if evals else {})}
    print(f"  {name:12s} seed {seed}: step {res.step}, {out['cpu_min']:.2f} CPU-min, "
          f"wall {wall:.0f} s, FID {out.get('fid', float('nan')):.2f}", flush=True)
    return out


def table(results: list[dict], args: argparse.Namespace) -> str:
    budget = f"{args.steps} steps" if args.steps else f"{args.minutes} CPU-minutes"
    lines = [
        f"# MNIST GAN experiments: {budget} per run, seeds {args.seeds}",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} thread(s). FID-LeNet: lenet5_mnist 84-d features, "
        f"{args.eval_n or 10000} EMA-G samples vs the MNIST test split. mean ± std over seeds.",
        "",
        "| config | FID-LeNet | KID | intra-FID | label recall (LeNet) | intra-class recall "
        "| precision | recall | steps | CPU-min |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in args.configs:
        rs = [r for r in results if r["name"] == name]

        def col(key: str, digits: int = 2, rs: list[dict] = rs) -> str:
            return mean_std([r[key] for r in rs if key in r], digits)

        lines.append(f"| {name} | {col('fid')} | {col('kid', 3)} | {col('ifid')} | "
                     f"{col('class_recall', 3)} | {col('intra_recall', 3)} | "
                     f"{col('precision', 3)} | {col('recall', 3)} | "
                     f"{col('step', 0)} | {col('cpu_min')} |")
    if any(len(r["curve"]) > 1 for r in results):
        lines += ["", "FID-LeNet during training (step / CPU-minutes → FID):", ""]
        for r in results:
            pts = ", ".join(f"{s} / {c:.1f} → {f:.1f}" for s, c, f in r["curve"])
            lines.append(f"- {r['name']} seed {r['seed']}: {pts}")
    lines += ["", "Command:", "", "```", "python " + " ".join(sys.argv), "```"]
    return "\n".join(lines) + "\n"


def plot_curves(results: list[dict], path: Path) -> None:
    """FID-LeNet against training CPU-minutes, one line per run (log y: FID spans decades)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    colours = {n: f"C{i}" for i, n in enumerate(dict.fromkeys(r["name"] for r in results))}
    labelled: set[str] = set()
    for r in results:
        if len(r["curve"]) > 1:
            _, cpu, fid = zip(*r["curve"])
            ax.plot(cpu, fid, "o-", color=colours[r["name"]], ms=3, lw=1,
                    label=None if r["name"] in labelled else r["name"])
            labelled.add(r["name"])
    ax.set_yscale("log")
    ax.set_xlabel("training CPU-minutes (1 thread)")
    ax.set_ylabel("FID-LeNet (lower is better)")
    ax.set_title("MNIST GANs: FID during training, one line per seed")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=15.0, help="CPU-minutes of training per run")
    ap.add_argument("--steps", type=int, default=0, help="a step budget instead of CPU time")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--configs", default=",".join(CONFIGS),
                    help=f"comma list of {', '.join(CONFIGS)}")
    ap.add_argument("--eval-n", type=int, default=0, help="samples per evaluation (default 10000)")
    ap.add_argument("--eval-every", type=int, default=0,
                    help="also evaluate every N steps (a FID curve in summary.md and curve.png)")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--out", default="runs/gan_mnist")
    args = ap.parse_args()
    args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    args.configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in args.configs if c not in CONFIGS]
    if unknown:
        sys.exit(f"unknown config(s) {unknown}; choose from {', '.join(CONFIGS)}")
    torch.set_num_threads(args.threads)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)", flush=True)
    t0 = time.perf_counter()
    results = [run_one(name, seed, args) for name in args.configs for seed in args.seeds]
    md = table(results, args)
    out = Path(args.out)
    with atomic_write(out / "summary.md", "w") as f:
        f.write(md)
    if any(len(r["curve"]) > 1 for r in results):
        plot_curves(results, out / "curve.png")
    print()
    print(md)
    print(f"total wall time {time.perf_counter() - t0:.0f} s; wrote {out}/summary.md and "
          f"{out}/grids/")


if __name__ == "__main__":
    main()
