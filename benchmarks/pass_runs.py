"""PASS at toy scale: SimCLR on full vs class-filtered CIFAR-10 (JPEG copy), linear probe on all
10 classes, the dropped classes reported separately.

Steps (all through fmlab's own code paths):

1. ``fmlab curate filter --drop none --drop-classes cat,dog --data cifar10 --out OUT/filter``
   (the proxy for PASS's people classes: CIFAR-10 has no people);
2. per seed, ``fmlab pretrain --config configs/pretrain/simclr_cifar10.yaml`` on ``cifar10`` (full)
   and on ``npz:OUT/filter/filtered.npz`` (filtered), same steps x batch x ``data.limit``;
3. the frozen encoders: kNN (k=20, T=0.07) and a linear probe (L2 logistic regression on
   standardised features, C chosen on a 1,000-image slice) on a fixed CIFAR-10 train subset
   (seed 0) / test subset (seed 1): overall, on the dropped classes, on the kept classes.

Usage (about 7 CPU-minutes at the defaults)::

    FMLAB_DATA=/work/shared/data python benchmarks/pass_runs.py --seeds 1,2,3 --out runs/pass

``--pair coco`` runs the same on COCO-mini's 80 train images vs the 43 without people
(``--drop people``; 8 held out, monitor off: the images have no labels; about 3 CPU-minutes at
``--batch-size 32``); the probe is still CIFAR-10 (no people classes to report separately).

Writes ``OUT/results.json`` and prints one line per run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from fmlab.adapt import KNN, LinearProbe
from fmlab.experiments.pretrain import load_pretrain_config, run_pretrain
from fmlab.utils.io import write_json

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "pretrain" / "simclr_cifar10.yaml"


@torch.no_grad()
def encode(bb, images: np.ndarray, batch: int = 500) -> torch.Tensor:
    bb.eval()
    return torch.cat([bb.encode(torch.from_numpy(images[i:i + batch])).float()
                      for i in range(0, len(images), batch)])


def evaluate(bb, ev: dict, dropped: list[int]) -> dict:
    """Accuracy of kNN and of a linear probe: overall, dropped classes, kept classes."""
    xtr, xte = encode(bb, ev["xtr"]), encode(bb, ev["xte"])
    ytr, yte = ev["ytr"], ev["yte"]
    knn = KNN(k=20, temperature=0.07).fit(xtr, ytr).predict(xte)
    mu, sd = xtr.mean(0), xtr.std(0).clamp_min(1e-6)
    ztr, zte = (xtr - mu) / sd, (xte - mu) / sd
    probe = LinearProbe(C=None, max_iter=200).fit(ztr[1000:], ytr[1000:], ztr[:1000], ytr[:1000])
    lin = np.asarray(probe.predict(zte))
    in_drop = np.isin(yte, dropped)
    out = {}
    for name, pred in (("knn", np.asarray(knn)), ("linear", lin)):
        ok = pred == yte
        out[name] = float(ok.mean())
        if dropped:
            out[f"{name}_dropped_classes"] = float(ok[in_drop].mean())
            out[f"{name}_kept_classes"] = float(ok[~in_drop].mean())
    return out


def eval_data(n_train: int, n_test: int) -> dict:
    from fmlab.data import open_source

    src = open_source("cifar10")
    tr, te = src.split("train"), src.split("test")
    i = np.random.default_rng(0).permutation(len(tr))[:n_train]
    j = np.sort(np.random.default_rng(1).permutation(len(te))[:n_test])
    return {"xtr": tr.get_batch(i), "ytr": tr.labels[i], "xte": te.get_batch(j),
            "yte": te.labels[j], "class_names": src.class_names}


def random_baseline(args: argparse.Namespace) -> None:
    """The reference point: resnet20_cifar at random init, probed exactly like the runs."""
    from fmlab.models import create_backbone

    torch.set_num_threads(1)
    ev = eval_data(args.eval_train, args.eval_test)
    dropped = [ev["class_names"].index(c.strip()) for c in args.drop_classes.split(",")]
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        torch.manual_seed(seed)
        rows.append({"condition": "random", "seed": seed,
                     **evaluate(create_backbone("resnet20_cifar"), ev, dropped)})
        print(json.dumps(rows[-1]), flush=True)
    write_json(Path(args.out) / "random.json", {"args": vars(args), "rows": rows})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--drop-classes", default="cat,dog")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--limit", type=int, default=5000, help="data.limit of both runs")
    ap.add_argument("--eval-train", type=int, default=5000)
    ap.add_argument("--eval-test", type=int, default=2000)
    ap.add_argument("--pair", default="cifar", choices=["cifar", "coco"],
                    help="cifar: full vs --drop-classes CIFAR-10; coco: COCO-mini train images "
                         "vs the same without people (--drop people; monitor off, no labels)")
    ap.add_argument("--random-only", action="store_true",
                    help="only score the architecture at random init (seeded like each run) with "
                         "the same probe: OUT/random.json")
    ap.add_argument("--out", default="runs/pass")
    args = ap.parse_args()
    if args.random_only:
        return random_baseline(args)
    torch.set_num_threads(1)
    out = Path(args.out)
    filt = out / "filter"
    coco = args.pair == "coco"
    drop = ["--drop", "people"] if coco else ["--drop", "none", "--drop-classes", args.drop_classes]
    cmd = [sys.executable, "-m", "fmlab", "curate", "filter", *drop,
           "--data", "coco_mini" if coco else "cifar10", "--out", str(filt)]
    t = time.perf_counter()
    if not (filt / "summary.json").is_file():  # a rerun reuses the filter's output
        subprocess.run(cmd, check=True)
    print(f"filter: {time.perf_counter() - t:.1f} s wall", flush=True)
    ev = eval_data(args.eval_train, args.eval_test)
    names = [] if coco else [c.strip() for c in args.drop_classes.split(",")]
    dropped = [ev["class_names"].index(c) for c in names]
    extra = (["data.val_size=8", "monitor.every_epochs=0"] if coco else
             [f"data.limit={args.limit}", "data.val_size=500", "monitor.max_train=2000"])
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        for cond, source in (("full", "coco_mini" if coco else "cifar10"),
                             ("filtered", f"npz:{filt / 'filtered.npz'}")):
            sets = ["trainer.progress=false", "trainer.tensorboard=false", f"trainer.seed={seed}",
                    f"trainer.max_steps={args.steps}", f"trainer.batch_size={args.batch_size}",
                    f"data.source={source}", "schedule.warmup_steps=5", *extra]
            run_dir = out / cond / f"seed{seed}"
            shutil.rmtree(run_dir, ignore_errors=True)
            cpu, wall = time.process_time(), time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = run_pretrain(load_pretrain_config(CONFIG, sets), run_dir)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            from fmlab.models import create_backbone

            meta = res.encoder or {}
            bb = create_backbone(meta["architecture"], weights=run_dir / "encoder.safetensors",
                                 **meta["kwargs"])
            scores = evaluate(bb, ev, dropped)
            rows.append({"condition": cond, "seed": seed, "steps": res.step,
                         "cpu_min": cpu / 60, "wall_min": wall / 60, "last_loss": res.last_loss,
                         "command": "fmlab pretrain --config configs/pretrain/simclr_cifar10.yaml "
                                    f"--out {run_dir} " + " ".join(f"--set {s}" for s in sets),
                         **scores})
            print(json.dumps(rows[-1]), flush=True)
            write_json(out / "results.json", {"args": vars(args), "filter_command": cmd[2:],
                                              "dropped": names, "rows": rows})
    print_summary(rows)


def print_summary(rows: list[dict]) -> None:
    """Mean ± std (%) over seeds per metric and condition."""
    for key in ("linear", "linear_dropped_classes", "linear_kept_classes", "knn",
                "knn_dropped_classes", "knn_kept_classes"):
        for cond in ("full", "filtered"):
            v = [100 * r[key] for r in rows if r["condition"] == cond and key in r]
            if not v:
                continue
            sd = statistics.stdev(v) if len(v) > 1 else 0.0
            print(f"{key:24s} {cond:9s} {statistics.mean(v):5.1f} ± {sd:.1f}")


if __name__ == "__main__":
    main()
