"""``fmlab translate train | apply``: train an unpaired (CycleGAN-style) translator, apply it."""

from __future__ import annotations

import argparse

from fmlab.cli.common import add_train_arguments, train_paths


def add_parser(sub) -> argparse._SubParsersAction:
    """Add ``fmlab translate`` and its subcommands; return the group's subparsers."""
    p = sub.add_parser("translate", help="unpaired image translation (CycleGAN + edge loss)",
                       description="Train a CycleGAN-style translator between two image domains "
                                   "from a YAML config, or translate an npz of images with one.")
    tsub = p.add_subparsers(dest="translate_command", metavar="SUBCOMMAND")
    tsub.required = True
    t = tsub.add_parser(
        "train", help="train a translator from a config (checkpoints, resume, samples.png)",
        description="Train a translator. RUN_DIR receives config.yaml, metrics.jsonl, "
                    "checkpoints/, samples.png and translator{,_ba}.safetensors + translator.json.")
    add_train_arguments(t, "configs/translate/<name>.yaml", "trainer.max_steps=100")
    t.set_defaults(func=run_train)
    a = tsub.add_parser("apply", help="translate the images 'x' of an npz (other arrays copied)",
                        description="Translate the uint8 images 'x' (N,H,W[,C]) of an npz; labels, "
                                    "boxes and any other arrays are copied unchanged.")
    a.add_argument("--model", required=True, help="run directory of `fmlab translate train`")
    a.add_argument("--input", required=True, help="npz with uint8 'x'")
    a.add_argument("--out", required=True, help="npz to write")
    a.add_argument("--direction", choices=("ab", "ba"), default="ab")
    a.add_argument("--batch-size", type=int, default=256)
    a.set_defaults(func=run_apply)
    return tsub


def run_train(args: argparse.Namespace) -> int:
    from fmlab.experiments.translate import load_translate_config, train_translator

    config, out, resumed = train_paths(args, "configs/translate/<name>.yaml")
    cfg = load_translate_config(config, args.overrides)
    res = train_translator(cfg, out, resume=resumed)
    how = f" (resumed from step {res.resumed_from})" if res.resumed_from is not None else ""
    stop = " (CPU budget reached)" if res.stopped_by_budget else ""
    print(f"trained {cfg.name} to step {res.step}/{res.max_steps}{how}{stop} in "
          f"{res.train_cpu_s / 60:.2f} CPU-min; wrote {out}/translator.json")
    if res.last_logs:
        print("last: " + ", ".join(f"{k} {v:.4g}" for k, v in res.last_logs.items()))
    return 0


def run_apply(args: argparse.Namespace) -> int:
    from fmlab.experiments.translate import apply_translator

    n = apply_translator(args.model, args.input, args.out, args.direction, args.batch_size)
    print(f"translated {n} images ({args.direction}) with {args.model}; wrote {args.out}")
    return 0
