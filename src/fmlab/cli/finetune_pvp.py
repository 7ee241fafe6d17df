"""``fmlab finetune pretrain-peft``: PVP stage 1, pre-train PEFT modules on an upstream source."""

from __future__ import annotations

import argparse
from pathlib import Path

from fmlab.cli.common import add_backbone, add_data_root, add_db, resolve_db

DESCRIPTION = (
    "PVP stage 1 (Song et al. 2023): train a PEFT method's modules (vpt, lora, ...) and a head of "
    "the upstream classes on the whole train split of --data, backbone frozen, through the "
    "fmlab finetune code path (shots=all, no validation images, the last state kept). Writes "
    "OUT/<method>_all_<seed>/adapter/ (the usual adapter), pvp.json (provenance) and "
    "upstream_sha256.safetensors (image hashes for the leak check). Stage 2: fmlab finetune "
    "--method M --init-from OUT (same method and options).")
EPILOG = """\
Settings: --set trainer.max_steps=N --set trainer.batch_size=B --set trainer.log_every=K
--set data.limit=M (a seeded random subset of M upstream images) and every fmlab finetune --set key.
Method options: --option KEY=VALUE (e.g. --option num_tokens=10, --option r=8); stage 2 must use
the same ones.
"""


def add_parser(finetune_subparsers) -> None:
    """Add ``pretrain-peft`` to the ``finetune`` group's subparsers (imports nothing heavy)."""
    p = finetune_subparsers.add_parser(
        "pretrain-peft", help="PVP stage 1: pre-train PEFT modules on an upstream source",
        description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_backbone(p)
    p.add_argument("--data", required=True, help="upstream labelled image source")
    p.add_argument("--method", required=True, help="one PEFT method (vpt, lora, ...)")
    p.add_argument("--run-seed", type=int, default=0,
                   help="seed of the run (head init, batches); default 0")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="option of the PEFT method (repeatable)")
    p.add_argument("--targets", default=None, help="comma list of module-name patterns")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="training setting override (repeatable)")
    p.add_argument("--test-split", default=None,
                   help="upstream split scored after training (default: test)")
    p.add_argument("--max-test", type=int, default=None,
                   help="score on a seeded random subset of N upstream test images")
    p.add_argument("--out", required=True, help="output directory (PVP_DIR)")
    add_data_root(p)
    add_db(p, default_help="OUT/fmlab.db")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fmlab.errors import ConfigError
    from fmlab.experiments.finetune import FinetuneConfig, parse_options
    from fmlab.experiments.finetune_pvp import pop_limit, run_pretrain_peft

    method = args.method.strip()
    if not method or "," in method:
        raise ConfigError(f"--method {args.method!r}: give one method")
    if args.max_test is not None and args.max_test < 1:
        raise ConfigError(f"--max-test: {args.max_test} must be >= 1")
    targets = None
    if args.targets is not None:
        targets = [t.strip() for t in args.targets.split(",") if t.strip()] or None
        if targets is None:
            raise ConfigError("--targets: give at least one pattern")
    limit, overrides = pop_limit(args.overrides)
    cfg = FinetuneConfig(
        backbone=args.backbone, weights=args.weights, data=args.data, out=Path(args.out),
        methods=[method], shots=["all"], seeds=[args.run_seed],
        options=parse_options(args.option, [method]), targets=targets, overrides=overrides,
        test_split=args.test_split, max_test=args.max_test, data_root=args.data_root,
        db=resolve_db(args, args.out), init_seed=args.seed, n_val=0, train_limit=limit)
    meta = run_pretrain_peft(cfg)
    print(f"pre-trained {method} modules on {meta['n_images']} images of {args.data} "
          f"({meta['steps']} steps; upstream test accuracy {meta['upstream_accuracy']:.4f})")
    print(f"wrote {args.out}/pvp.json, {meta['adapter']}/ and {meta['image_hashes']}; "
          f"use: fmlab finetune --method {method} --init-from {args.out} ...")
    return 0
