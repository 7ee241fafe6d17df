"""``fmlab zsl``: zero-shot classification by feature generation (LisGAN, f-CLSWGAN) or projection."""

from __future__ import annotations

import argparse
from pathlib import Path

from fmlab.cli.common import add_backbone, add_data_root, add_db, no_empty_dir_on_error, resolve_db

EXAMPLE = "configs/zsl/lisgan.yaml"


def add_parser(sub) -> None:
    p = sub.add_parser(
        "zsl", help="zero-shot learning on frozen features: lisgan, clswgan, projection",
        description="Train on the seen classes' features only, then classify the unseen classes "
                    "(ZSL top-1) and all classes (GZSL seen/unseen accuracy and harmonic mean H). "
                    "lisgan: conditional WGAN-GP on features with a classification term and soul "
                    "samples; clswgan: the same GAN without soul samples; projection: ridge from "
                    "features to class embeddings. Class semantics are MiniLM embeddings of class "
                    "descriptions. Writes results.json, summary.md, run.json, config.yaml, "
                    "features_pca.png (GAN methods) and results-store rows.")
    add_backbone(p)
    p.add_argument("--data", required=True, help="labelled image source (cifar10, eurosat, npz:...)")
    p.add_argument("--unseen", required=True, help="comma list of class names held out as unseen")
    p.add_argument("--method", required=True, choices=["lisgan", "clswgan", "projection"])
    p.add_argument("--validate", default=None, metavar="CLASSES",
                   help="choose settings without unseen data: drop the --unseen classes, let these "
                        "seen classes play unseen, test on the last 20%% of the train images")
    p.add_argument("--seeds", default="1,2,3", help="comma list of seeds (default 1,2,3)")
    p.add_argument("--config", default=None, help=f"hyperparameters YAML, e.g. {EXAMPLE} (default: built-in)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. trainer.max_steps=200 (repeatable)")
    p.add_argument("--out", required=True, help="output directory")
    add_data_root(p)
    add_db(p, default_help="OUT/fmlab.db")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fmlab.experiments.zsl import ZSLRun, run_zsl
    from fmlab.utils.parsing import parse_ints

    seeds = parse_ints(args.seeds, "--seeds")
    zrun = ZSLRun(backbone=args.backbone, weights=args.weights, data=args.data, unseen=args.unseen,
                  method=args.method, out=Path(args.out), seeds=seeds, config=args.config,
                  overrides=list(args.overrides), data_root=args.data_root,
                  db=resolve_db(args, args.out), init_seed=args.seed,
                  validate=args.validate)
    with no_empty_dir_on_error(args.out):
        run_zsl(zrun)
    print((Path(args.out) / "summary.md").read_text())
    print(f"wrote {args.out}/results.json, summary.md")
    return 0
