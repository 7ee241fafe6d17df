"""``fmlab region``: DITO-style region-text pre-training on canvas, and open-vocabulary box retrieval."""

from __future__ import annotations

import argparse
import math

from fmlab.cli.common import add_db, add_train_arguments, resolve_db, train_paths

EXAMPLE = "configs/region/canvas_region.yaml"


def add_parser(sub) -> None:
    p = sub.add_parser("region", help="region-text (DITO, reduced) pre-training and box retrieval by text",
                       description="Pre-train a detector-style image tower with region-text (or image-level) "
                                   "contrast on canvas captions, then rank candidate boxes by class text "
                                   "queries (box-retrieval AP for base and novel classes).")
    s = p.add_subparsers(dest="region_command", metavar="SUBCOMMAND")
    s.required = True

    t = s.add_parser("pretrain", help="pre-train from a YAML config")
    add_train_arguments(t, EXAMPLE)
    t.set_defaults(func=run_pretrain)

    e = s.add_parser("eval", help="box-retrieval AP (base and novel classes) of a pretrain run")
    e.add_argument("--model", required=True, help="run directory of fmlab region pretrain")
    e.add_argument("--data", default=None, help="canvas spec over the same pool (default: the run's data.source)")
    e.add_argument("--split", default="test", choices=("test", "val"),
                   help="test canvases, or val (the run's last data.val train canvases; tune there)")
    e.add_argument("--picture", default=None, metavar="PNG", help="draw the top boxes for each novel-class query")
    add_db(e)
    e.set_defaults(func=run_eval)


def run_pretrain(args: argparse.Namespace) -> int:
    from fmlab.experiments.region import load_region_config, run_region_pretrain

    config, out, resumed = train_paths(args, EXAMPLE)
    cfg = load_region_config(config, args.overrides)
    res = run_region_pretrain(cfg, out, resume=resumed)
    kind = "region-text" if cfg.objective.region else "image-level"
    loss = f", loss {res.last_loss:.4g}" if res.last_loss is not None else ""
    print(f"pre-trained {kind} to step {res.step}{loss} in {res.seconds:.0f}s; novel classes {res.novel}; "
          f"model in {out} (use fmlab region eval --model {out})")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from fmlab.experiments.region import run_region_eval

    out = run_region_eval(args.model, args.data, args.split, resolve_db(args, args.model), args.picture)
    for k, v in out.items():
        if isinstance(v, float):
            print(f"{k:14s} {'nan' if math.isnan(v) else f'{v:.4f}'}")
        elif k != "per_class":
            print(f"{k:14s} {v}")
    print("per class AP   " + ", ".join(f"{c}: {a:.3f}" for c, a in out["per_class"].items()))
    if args.picture:
        print(f"picture: {args.picture}")
    return 0
