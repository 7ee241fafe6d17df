"""Issue 21, DITO (reduced): region-text vs image-level pre-training, box-retrieval AP for base and novel classes.

For each object pool (MNIST canvases, and canvases over a user's npz pool) and each seed, runs

    fmlab region pretrain --config configs/region/canvas_{region,image}.yaml --out RUN \\
        --set trainer.seed=S --set model.seed=S [--set data.source=...]
    fmlab region eval --model RUN --db DB

(in-process, one after another, single-threaded) and writes ``results.json`` and ``results.md`` (mean ± std over
seeds, CPU seconds per run) to ``--out``.

    OMP_NUM_THREADS=1 python benchmarks/issue21_region.py --out docs/results/region/bench --runs /tmp/region_runs
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from _pools import shapes_pool

ROOT = Path(__file__).resolve().parents[1]
POOLS = {"mnist": "mnist", "shapes": "npz:{shapes}"}
VARIANTS = {"region-text": "canvas_region.yaml", "image-level": "canvas_image.yaml"}
METRICS = ("ap_novel", "ap_base", "ap_all", "chance_novel", "chance_base")


def run_one(variant: str, pool: str, seed: int, runs: Path, db: Path, sets: list[str]) -> dict:
    """Pre-train and evaluate one (variant, pool, seed); returns the metrics and CPU seconds."""
    from fmlab.experiments.region import load_region_config, run_region_eval, run_region_pretrain

    cfg = load_region_config(ROOT / "configs" / "region" / VARIANTS[variant], [
        f"trainer.seed={seed}", f"model.seed={seed}", "trainer.progress=false", *sets])
    cfg.data.source = cfg.data.source.replace("objects=mnist", "objects=" + POOLS[pool].format(shapes=shapes_pool()))
    run = runs / f"{pool}-{variant}-s{seed}"
    c0, w0 = time.process_time(), time.perf_counter()
    run_region_pretrain(cfg, run)
    cpu_train = time.process_time() - c0
    res = run_region_eval(run, db=db, picture=run / "top_novel.png")
    return {"variant": variant, "pool": pool, "seed": seed, **{k: res[k] for k in METRICS},
            "per_class": res["per_class"], "novel": res["novel"], "cpu_s_train": cpu_train,
            "cpu_s_total": time.process_time() - c0, "wall_s": time.perf_counter() - w0, "source": cfg.data.source}


def table(rows: list[dict]) -> str:
    """Markdown table: mean ± std (n seeds) per pool and variant."""
    lines = ["| pool | pre-training | AP novel | AP base | AP all | chance novel / base | n | CPU s / run |",
             "|---|---|---|---|---|---|---|---|"]
    for pool in dict.fromkeys(r["pool"] for r in rows):
        for variant in VARIANTS:
            sel = [r for r in rows if r["pool"] == pool and r["variant"] == variant]
            if not sel:
                continue

            def ms(key: str, sel=sel) -> str:
                v = np.array([r[key] for r in sel], dtype=float)
                return f"{v.mean():.3f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.3f}"

            chance = f"{np.mean([r['chance_novel'] for r in sel]):.3f} / {np.mean([r['chance_base'] for r in sel]):.3f}"
            cpu = np.mean([r["cpu_s_total"] for r in sel])
            lines.append(f"| {pool} | {variant} | {ms('ap_novel')} | {ms('ap_base')} | {ms('ap_all')} | {chance} | "
                         f"{len(sel)} | {cpu:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="docs/results/region/bench")
    p.add_argument("--runs", default=None, help="where the run directories go (default: OUT/runs)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--pools", nargs="+", default=list(POOLS), choices=list(POOLS))
    p.add_argument("--set", dest="sets", action="append", default=[], help="extra config override (both variants)")
    a = p.parse_args()
    torch.set_num_threads(1)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rows_path = out / "results.json"
    rows = json.loads(rows_path.read_text()) if rows_path.is_file() else []
    done = {(r["pool"], r["variant"], r["seed"]) for r in rows}
    for pool in a.pools:
        for seed in a.seeds:
            for variant in VARIANTS:
                if (pool, variant, seed) in done:
                    continue
                rows.append(run_one(variant, pool, seed, Path(a.runs or out / "runs"), out / "fmlab.db", a.sets))
                rows_path.write_text(json.dumps(rows, indent=1))
                (out / "results.md").write_text(table(rows))
                print(f"{pool} {variant} seed {seed}: AP novel {rows[-1]['ap_novel']:.3f} base "
                      f"{rows[-1]['ap_base']:.3f} ({rows[-1]['cpu_s_total']:.0f} CPU s)", flush=True)
    print(table(rows))


if __name__ == "__main__":
    main()
