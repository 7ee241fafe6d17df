"""``fmlab video``: train X-CLIP (or mean pooling) on ``video`` clips; evaluate per label kind."""

from __future__ import annotations

import argparse

from fmlab.cli.common import add_db, add_train_arguments, resolve_db, train_paths

EXAMPLE = "configs/video/xclip_motion.yaml"


def add_parser(sub) -> None:
    p = sub.add_parser("video", help="video models: X-CLIP vs mean pooling (train, eval)",
                       description="Train X-CLIP (cross-frame messages, multi-frame integration, video "
                                   "prompts) or its mean-pooling baseline on video clips; evaluate accuracy "
                                   "on appearance, direction and speed labels separately.")
    s = p.add_subparsers(dest="video_command", metavar="SUBCOMMAND")
    s.required = True

    t = s.add_parser("train", help="train from a YAML config (configs/video/*.yaml)")
    add_train_arguments(t, EXAMPLE, "trainer.max_steps=50, data.shots=4")
    t.set_defaults(func=run_train)

    e = s.add_parser("eval", help="accuracy per label kind (appearance, direction, speed) with chance levels")
    e.add_argument("--model", required=True, help="run directory of fmlab video train")
    e.add_argument("--data", default=None, help="video?... source spec (default: the one trained on)")
    e.add_argument("--no-probe", action="store_true", help="skip the linear probes on the video embedding")
    add_db(e)
    e.set_defaults(func=run_eval)


def run_train(args: argparse.Namespace) -> int:
    from fmlab.experiments.video import load_video_config, run_video_train

    config, out, resumed = train_paths(args, EXAMPLE)
    cfg = load_video_config(config, args.overrides)
    res = run_video_train(cfg, out, resume=resumed)
    loss = f", loss {res.last_loss:.4g}" if res.last_loss is not None else ""
    print(f"trained video model on {','.join(cfg.data.targets)} ({res.n_train} clips) to step {res.step}{loss} "
          f"in {res.seconds:.0f}s; use --model {out}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from fmlab.experiments.video_eval import run_video_eval

    metrics = run_video_eval(args.model, args.data, resolve_db(args), probe=not args.no_probe)
    for k, v in metrics.items():
        print(f"{k:24s} {v:.4f}")
    return 0
