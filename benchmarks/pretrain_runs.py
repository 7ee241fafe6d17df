"""Pre-training objectives at a fixed CPU-minute budget, several seeds, one table.

For each objective, ``configs/pretrain/<objective>_<data>.yaml`` is trained through ``fmlab
pretrain``'s code path (:func:`fmlab.experiments.pretrain.run_pretrain`) for as many optimiser
steps as the budget buys, then its frozen encoder is evaluated against the same architecture at
random init (seeded like the run):

* kNN accuracy (cosine, k=20, T=0.07 — the monitor's rule) and a linear probe (L2 logistic
  regression on standardised features, C chosen on a 2,000-image slice of the train subset) on
  the test split, with train features from a fixed 10,000-image train subset (seed 0);
  the primary metric is kNN for the contrastive / distillation / supervised objectives and the
  linear probe for MAE and MP3 (whose features are not trained for cosine similarity);
* collapse statistics of the test features (std·sqrt(D) and effective rank; collapse is flagged
  below 0.02 / 1.5, the engine monitor's thresholds).

Budget: before the seeds, two short calibration runs (2 and 2+K steps, monitors off) of each
objective give its process CPU seconds per step; a run then gets ``budget / that`` steps, so its
cosine schedule completes (cutting a run at the budget would stop it mid-schedule). The table
reports the CPU time each run actually used (training steps plus the per-epoch kNN monitor).

Full study (the lead schedules it; ~8 objectives x 3 seeds x 15 CPU-minutes + evaluation)::

    FMLAB_DATA=/work/shared/data python benchmarks/pretrain_runs.py --budget 15 --seeds 1,2,3 \\
        --out runs/pretrain_cifar10

Smoke (about a minute)::

    FMLAB_DATA=/work/shared/data python benchmarks/pretrain_runs.py --objectives supervised \\
        --budget 0.5 --seeds 1 --train-images 5000 --eval-train 2000 --eval-test 2000 \\
        --out runs/pretrain_smoke

Outputs: ``OUT/summary.md`` (table + exact commands), ``OUT/results.json`` and the run
directories ``OUT/<objective>/seed<S>/``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from fmlab.adapt import KNN, LinearProbe
from fmlab.engine.monitors import check_collapse, collapse_stats
from fmlab.experiments.pretrain import load_pretrain_config, load_pretrain_data, run_pretrain
from fmlab.utils.io import atomic_write, write_json

OBJECTIVES = ("simclr", "moco", "dino", "mae", "mp3", "look", "distill", "supervised")
LINEAR_PRIMARY = {"mae", "mp3", "selfie", "spark", "spark_dense", "sit"}
CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs" / "pretrain"
QUIET = ["trainer.progress=false", "trainer.tensorboard=false"]


def mean_std(values: list[float], scale: float = 100.0, digits: int = 1) -> str:
    if not values:
        return "–"
    v = [x * scale for x in values]
    if len(v) == 1:
        return f"{v[0]:.{digits}f}"
    return f"{statistics.mean(v):.{digits}f} ± {statistics.stdev(v):.{digits}f}"


def overrides_for(args: argparse.Namespace, extra: list[str]) -> list[str]:
    sets = list(extra)
    if args.train_images:
        sets.append(f"data.limit={args.train_images}")
    return sets + list(args.overrides)


# --------------------------------------------------------------------------- budget


def cpu_per_step(objective: str, args: argparse.Namespace, data) -> float:
    """Process CPU seconds per optimiser step: (cost of 2+K steps - cost of 2 steps) / K.

    A discarded 2-step run goes first: the first run of a process pays one-time costs (oneDNN
    builds its bf16 kernels on first use), which would otherwise inflate the 2-step cost and make
    the difference -- and so the per-step estimate -- several times too small."""
    k = args.calibration_steps
    costs = []
    for steps in (2, 2, 2 + k):
        with tempfile.TemporaryDirectory() as tmp:
            cfg = load_pretrain_config(CONFIG_DIR / f"{objective}_{args.data}.yaml",
                                       overrides_for(args, QUIET + [
                                           f"trainer.max_steps={steps}", "monitor.every_epochs=0",
                                           "trainer.checkpoint_every=0",
                                           "schedule.warmup_steps=0"]))  # timing only
            t = time.process_time()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # e.g. collapse alarms of these tiny runs
                run_pretrain(cfg, Path(tmp) / "run", data=data)
            costs.append(time.process_time() - t)
    return max((costs[2] - costs[1]) / k, 1e-3)


# --------------------------------------------------------------------------- evaluation


@torch.no_grad()
def encode(bb, images: np.ndarray, batch: int = 500) -> torch.Tensor:
    bb.eval()
    return torch.cat([bb.encode(torch.from_numpy(images[i:i + batch])).float()
                      for i in range(0, len(images), batch)])


def evaluate(bb, ev: dict) -> dict:
    """kNN and linear-probe test accuracy and collapse statistics of ``bb``'s features."""
    xtr, xte = encode(bb, ev["train_images"]), encode(bb, ev["test_images"])
    ytr, yte = ev["train_labels"], ev["test_labels"]
    knn = KNN(k=20, temperature=0.07).fit(xtr, ytr)
    knn_acc = float((knn.predict(xte) == yte).mean())
    mu, sd = xtr.mean(0), xtr.std(0).clamp_min(1e-6)
    ztr, zte = (xtr - mu) / sd, (xte - mu) / sd
    n_val = min(2000, len(ztr) // 5)
    probe = LinearProbe(C=None, max_iter=200).fit(ztr[n_val:], ytr[n_val:], ztr[:n_val],
                                                 ytr[:n_val])
    lin_acc = float((probe.predict(zte) == yte).mean())
    stats = collapse_stats(xte)
    collapsed = check_collapse(stats)
    return {"knn": knn_acc, "linear": lin_acc, "std_ratio": stats["std_ratio"],
            "effective_rank": stats["effective_rank"], "collapsed": collapsed,
            "probe_C": probe.hyperparameters_["C"]}


def eval_data(args: argparse.Namespace) -> dict:
    """A fixed train subset (seed 0) and the test split, decoded once."""
    from fmlab.data import open_source

    source = open_source(args.data, args.data_root)
    train, test = source.split("train"), source.split("test")
    # seeded, unsorted: the CIFAR-10 file is sorted by class, and the probe's validation slice
    # is the first rows
    tr_idx = np.random.default_rng(0).permutation(len(train))[:args.eval_train]
    te_idx = np.arange(len(test))
    if args.eval_test and args.eval_test < len(test):  # seeded subset: the test file is sorted too
        te_idx = np.sort(np.random.default_rng(1).permutation(len(test))[:args.eval_test])
    return {"train_images": train.get_batch(tr_idx), "train_labels": train.labels[tr_idx],
            "test_images": test.get_batch(te_idx), "test_labels": test.labels[te_idx],
            "note": f"train subset {len(tr_idx)} (seed 0), test {len(te_idx)}"
                    f"{' (seed 1)' if len(te_idx) < len(test) else ''} of {args.data}"
                    + (f" ({source.metadata['warning']})" if "warning" in source.metadata
                       else "")}


_RANDOM: dict[str, dict] = {}


def random_init_scores(cfg, seed: int, ev: dict) -> dict:
    """Scores of the run's architecture at random init (seeded like the run), once per
    (architecture, kwargs, seed): the ResNet objectives share them."""
    from fmlab.models import create_backbone

    key = json.dumps([cfg.model.arch, cfg.model.kwargs, seed], sort_keys=True)
    if key not in _RANDOM:
        torch.manual_seed(seed)
        _RANDOM[key] = evaluate(create_backbone(cfg.model.arch, **cfg.model.kwargs), ev)
    return _RANDOM[key]


# --------------------------------------------------------------------------- runs


def run_objective(objective: str, args: argparse.Namespace, data, ev: dict) -> list[dict]:
    cfg_path = CONFIG_DIR / f"{objective}_{args.data}.yaml"
    per_step = cpu_per_step(objective, args, data)
    budget = args.budget_for.get(objective, args.budget)
    steps = max(int(budget * 60 / per_step), 1)
    print(f"{objective}: {per_step:.2f} CPU-s per step -> {steps} steps for {budget} "
          f"CPU-min", flush=True)
    rows = []
    for seed in args.seeds:
        from fmlab.models import create_backbone

        sets = overrides_for(args, QUIET + [f"trainer.seed={seed}",
                                            f"trainer.max_steps={steps}"])
        cfg = load_pretrain_config(cfg_path, sets)
        run_dir = Path(args.out) / objective / f"seed{seed}"
        if run_dir.exists():
            shutil.rmtree(run_dir)
        t_cpu, t_wall = time.process_time(), time.perf_counter()
        res = run_pretrain(cfg, run_dir, data=data)
        cpu, wall = time.process_time() - t_cpu, time.perf_counter() - t_wall
        meta = res.encoder or {}
        trained = create_backbone(meta["architecture"], weights=run_dir / "encoder.safetensors",
                                  **meta["kwargs"])
        row = {"objective": objective, "seed": seed, "arch": cfg.model.arch, "steps": res.step,
               "batch_size": cfg.trainer.batch_size, "images_seen": res.step *
               cfg.trainer.batch_size, "cpu_min": cpu / 60, "wall_min": wall / 60,
               "last_loss": res.last_loss, "monitor": res.monitor,
               "command": command(cfg_path, run_dir, sets),
               "pretrained": evaluate(trained, ev),
               "random": random_init_scores(cfg, seed, ev)}
        rows.append(row)
        p, r = row["pretrained"], row["random"]
        print(f"  seed {seed}: {res.step} steps, {row['cpu_min']:.2f} CPU-min, wall "
              f"{row['wall_min']:.2f} min, loss {res.last_loss:.4g} | kNN {p['knn']:.3f} "
              f"(random {r['knn']:.3f}), linear {p['linear']:.3f} (random {r['linear']:.3f}), "
              f"std*sqrt(D) {p['std_ratio']:.3f}, erank {p['effective_rank']:.1f}"
              f"{' COLLAPSED' if p['collapsed'] else ''}", flush=True)
    return rows


def command(cfg_path: Path, run_dir: Path, sets: list[str]) -> str:
    rel = os.path.relpath(cfg_path, Path.cwd())
    return (f"fmlab pretrain --config {rel} --out {run_dir} " +
            " ".join(f"--set {s}" for s in sets))


def table(rows: list[dict], args: argparse.Namespace, ev_note: str, machine: str) -> str:
    lines = [
        f"# Pre-training at {args.budget} CPU-minutes per run"
        + "".join(f" ({o}: {m})" for o, m in args.budget_for.items())
        + f" on {args.data}, seeds "
        f"{','.join(map(str, args.seeds))}",
        "",
        f"Frozen-feature accuracy (%) on {ev_note}; mean ± std over seeds. Primary metric: kNN "
        f"(k=20, T=0.07) except linear probe for MAE/MP3. 'random' = the same architecture at "
        f"random init (seeded like the run). Collapse: std·sqrt(D) / effective rank of the "
        f"test features (alarm < 0.02 / 1.5).",
        "",
        f"Machine: {machine}",
        "",
        "| objective | arch | metric | pre-trained | random init | other metric (pre / random) "
        "| steps × batch | CPU-min | std·√D | eff. rank | collapsed |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for obj in dict.fromkeys(r["objective"] for r in rows):
        rs = [r for r in rows if r["objective"] == obj]
        primary = "linear" if obj in LINEAR_PRIMARY else "knn"
        other = "knn" if primary == "linear" else "linear"
        col = [r["pretrained"] for r in rs]
        rnd = [r["random"] for r in rs]
        lines.append(
            f"| {obj} | {rs[0]['arch']} | {primary} | {mean_std([c[primary] for c in col])} | "
            f"{mean_std([c[primary] for c in rnd])} | {other}: "
            f"{mean_std([c[other] for c in col])} / {mean_std([c[other] for c in rnd])} | "
            f"{rs[0]['steps']} × {rs[0]['batch_size']} | "
            f"{statistics.mean(r['cpu_min'] for r in rs):.1f} | "
            f"{statistics.mean(c['std_ratio'] for c in col):.3f} | "
            f"{statistics.mean(c['effective_rank'] for c in col):.1f} | "
            f"{sum(c['collapsed'] for c in col)}/{len(col)} |")
    lines += ["", "Commands (one per run):", "", "```"]
    lines += [r["command"] for r in rows]
    lines += ["```", "", "Benchmark command:", "", "```",
              "python " + " ".join([os.path.relpath(__file__, Path.cwd()), *sys.argv[1:]]),
              "```"]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--objectives", default=",".join(OBJECTIVES))
    ap.add_argument("--data", default="cifar10", choices=["cifar10", "mnist"])
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--budget", type=float, default=15.0, help="CPU-minutes of training per run")
    ap.add_argument("--budget-for", action="append", default=[], metavar="OBJECTIVE=MINUTES",
                    help="a different budget for one objective, e.g. supervised=2")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--train-images", type=int, default=0,
                    help="pre-train on the first N training images (0: all but the 1,000 "
                         "held-out monitor queries)")
    ap.add_argument("--eval-train", type=int, default=10000, help="train subset for kNN/probe")
    ap.add_argument("--eval-test", type=int, default=0,
                    help="a seeded subset of N test images (0: all)")
    ap.add_argument("--calibration-steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    ap.add_argument("--set", dest="overrides", action="append", default=[],
                    help="extra config override for every run, e.g. optim.lr=2e-3")
    ap.add_argument("--out", default="runs/pretrain_runs")
    args = ap.parse_args()
    args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    try:
        args.budget_for = {k.strip(): float(v) for k, v in
                           (item.split("=", 1) for item in args.budget_for)}
    except ValueError:
        raise SystemExit(f"--budget-for: expected OBJECTIVE=MINUTES, got {args.budget_for}") from None
    objectives = [o.strip() for o in args.objectives.split(",") if o.strip()]
    if args.threads:
        torch.set_num_threads(args.threads)
    load = f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "?"
    machine = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch "
               f"{torch.__version__}, {torch.get_num_threads()} threads, load average at start "
               f"{load}")
    print(machine, flush=True)

    t0 = time.perf_counter()
    cfg0 = load_pretrain_config(CONFIG_DIR / f"{objectives[0]}_{args.data}.yaml",
                                overrides_for(args, []))
    data = load_pretrain_data(cfg0.data)
    ev = eval_data(args)
    print(f"data: {len(data.train)} training images, {ev['note']} "
          f"({time.perf_counter() - t0:.0f} s)", flush=True)
    rows: list[dict] = []
    for obj in objectives:
        rows += run_objective(obj, args, data, ev)
        out = Path(args.out)
        write_json(out / "results.json", rows)
        with atomic_write(out / "summary.md", "w") as f:
            f.write(table(rows, args, ev["note"], machine))
    print()
    print((Path(args.out) / "summary.md").read_text())
    load = f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "?"
    print(f"total wall {(time.perf_counter() - t0) / 60:.1f} min; load average now {load}")


if __name__ == "__main__":
    main()
