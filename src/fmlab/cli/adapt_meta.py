"""``fmlab adapt meta-train``: GRAM's meta-learnt CoOp context and gradient regulator."""

from __future__ import annotations

import argparse
from pathlib import Path

from fmlab.cli.common import add_data_root


def add_parser(adapt_subparsers) -> None:
    """Add ``meta-train`` to the ``adapt`` group's subparsers (imports nothing heavy)."""
    p = adapt_subparsers.add_parser(
        "meta-train", help="meta-train GRAM's prompt init and gradient regulator",
        description="Meta-learn a CoOp context and a gradient regulator (GRAM) on unlabelled "
                    "image-text pairs with first-order MAML over k-means pseudo-domains; "
                    "writes META_DIR/gram_meta.safetensors, gram_meta.json and image_hashes.json "
                    "for `fmlab adapt --methods gram --meta META_DIR`. Settings: --config, then "
                    "--set (e.g. --set trainer.max_steps=2 --set data.limit=120).")
    p.add_argument("--clip-model", required=True,
                   help="the image-text model (a `fmlab clip train` folder or open_clip:<arch>)")
    p.add_argument("--data", default=None,
                   help="image-text source (default: the config's data.source, coco_mini)")
    p.add_argument("--config", default=None,
                   help="YAML of settings (default: the built-in defaults of "
                        "configs/adapt/gram_meta.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting, e.g. meta.n_way=3 or trainer.max_steps=50 (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue OUT/run from its last checkpoint")
    p.add_argument("--out", required=True, help="output folder (META_DIR)")
    add_data_root(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fmlab.experiments.gram_meta import load_meta_config, run_meta_train

    sets = [f"clip_model={args.clip_model}"]
    if args.data:
        sets.append(f"data.source={args.data}")
    if args.data_root:
        sets.append(f"data.data_root={args.data_root}")
    cfg = load_meta_config(args.config, [*sets, *args.overrides])
    info = run_meta_train(cfg, Path(args.out), resume=args.resume)
    print(f"meta-trained {info['steps']} steps on {info['n_pairs']} pairs of {info['source']} "
          f"({info['n_pseudo_classes']} pseudo-classes); wrote {args.out}/gram_meta.safetensors, "
          "gram_meta.json, image_hashes.json")
    return 0
