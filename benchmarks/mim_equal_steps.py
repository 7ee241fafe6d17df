"""One objective's config at a fixed step count (equal images seen across arms), evaluated exactly
as ``benchmarks/pretrain_runs.py`` does (same train/test subsets, kNN + linear probe). Written for
SparK's dense ablation at the sparse run's steps; ``--set`` makes the arms of other comparisons
(GPT4Image with and without its alignment term).

    FMLAB_DATA=/work/shared/data python benchmarks/mim_equal_steps.py --objective spark_dense \\
        --steps 59 --seeds 1,2,3 --out runs/mim1/dense59
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path

import torch

from fmlab.experiments.pretrain import load_pretrain_config, run_pretrain
from fmlab.models import create_backbone
from fmlab.utils.io import write_json

_spec = importlib.util.spec_from_file_location("pretrain_runs",
                                               Path(__file__).with_name("pretrain_runs.py"))
pr = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--objective", default="spark_dense")
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--train-images", type=int, default=20000)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="extra config override for every run (repeatable), e.g. objective.align_weight=0")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    ev = pr.eval_data(argparse.Namespace(data="cifar10", data_root=None, eval_train=5000,
                                         eval_test=2000))
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        sets = pr.QUIET + [f"trainer.seed={seed}", f"trainer.max_steps={args.steps}",
                           f"data.limit={args.train_images}", *args.overrides]
        cfg = load_pretrain_config(pr.CONFIG_DIR / f"{args.objective}_cifar10.yaml", sets)
        run_dir = Path(args.out) / f"seed{seed}"
        t = time.process_time()
        run_pretrain(cfg, run_dir)
        cpu = (time.process_time() - t) / 60
        bb = create_backbone(cfg.model.arch, weights=run_dir / "encoder.safetensors")
        res = pr.evaluate(bb, ev)
        rows.append({"seed": seed, "steps": args.steps, "cpu_min": cpu, "pretrained": res,
                     "command": pr.command(pr.CONFIG_DIR / f"{args.objective}_cifar10.yaml",
                                           run_dir, sets)})
        print(f"seed {seed}: linear {res['linear']:.3f} knn {res['knn']:.3f} cpu {cpu:.2f} min",
              flush=True)
        write_json(Path(args.out) / "results.json", rows)


if __name__ == "__main__":
    main()
