"""``fmlab dense``: DenseCLIP segmentation on canvases — train from a config, evaluate mIoU."""

from __future__ import annotations

import argparse
from pathlib import Path

from fmlab.cli.common import add_db, add_train_arguments, resolve_db, train_paths

EXAMPLE = "configs/dense/canvas_denseclip.yaml"


def add_parser(sub) -> None:
    p = sub.add_parser("dense", help="DenseCLIP: language-guided segmentation (train, eval)",
                       description="Train DenseCLIP (pixel-text score map, context-aware prompting) or its "
                                   "language-free baseline on canvas segmentation, and evaluate mIoU.")
    s = p.add_subparsers(dest="dense_command", metavar="SUBCOMMAND")
    s.required = True

    t = s.add_parser("train", help="train from a YAML config")
    add_train_arguments(t, EXAMPLE)
    t.set_defaults(func=run_train)

    e = s.add_parser("eval", help="mIoU (with and without background), pixel accuracy, score-map picture")
    e.add_argument("--model", required=True, help="run directory of fmlab dense train")
    e.add_argument("--data", default=None, help="canvas source spec (default: the run's data.source)")
    e.add_argument("--split", default="test")
    e.add_argument("--limit", type=int, default=0, help="evaluate the first N canvases only (0: all)")
    e.add_argument("--picture", default=None, metavar="PNG",
                   help="write a grid: images, truth, prediction and each class's score map")
    e.add_argument("--batch-size", type=int, default=64)
    add_db(e, "RUN_DIR/fmlab.db")
    e.set_defaults(func=run_eval)


def run_train(args: argparse.Namespace) -> int:
    from fmlab.experiments.dense import load_dense_config, run_dense_train

    config, out, resumed = train_paths(args, EXAMPLE)
    cfg = load_dense_config(config, args.overrides)
    res = run_dense_train(cfg, out, resume=resumed)
    kind = "DenseCLIP" if cfg.model.language else "baseline"
    loss = f", loss {res.last_loss:.4g}" if res.last_loss is not None else ""
    print(f"trained {kind} to step {res.step}{loss} in {res.seconds:.0f}s; model in {out} "
          f"(fmlab dense eval --model {out})")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from fmlab.experiments.dense_eval import run_dense_eval
    from fmlab.utils.validation import non_negative_int, positive_int

    positive_int("--batch-size", args.batch_size)
    non_negative_int("--limit", args.limit)
    metrics = run_dense_eval(args.model, args.data, args.split, args.limit, resolve_db(args, args.model),
                             args.picture, batch_size=args.batch_size)
    for k, v in metrics.items():
        print(f"{k:24s} {v:.4f}" if isinstance(v, float) else f"{k:24s} {v}")
    if args.picture:
        print(f"picture: {Path(args.picture)}")
    return 0
