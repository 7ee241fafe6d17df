"""``fmlab features extract``."""

from __future__ import annotations

import argparse
import json

from fmlab.cli.common import add_backbone, add_data_root


def add_parser(sub) -> None:
    p = sub.add_parser("features", help="extract and cache features",
                       description="Extract features with a backbone and cache them.")
    fsub = p.add_subparsers(dest="features_command", metavar="SUBCOMMAND")
    fsub.required = True
    e = fsub.add_parser("extract", help="extract features of one split to a safetensors file",
                        description="Batched, no-grad feature extraction; cached by content under "
                                    "$FMLAB_CACHE (a second identical call is instant).")
    add_backbone(e, seed_help="seed of the backbone's random init when no --weights are given, and of "
                              "the augmented views (default 0)")
    e.add_argument("--data", required=True, help="source spec (named, npz:, folder:, csv:, jsonl:, wds:)")
    e.add_argument("--split", default="train")
    e.add_argument("--out", required=True, help="output .safetensors file")
    e.add_argument("--views", type=int, default=0, help="augmented views per image (0 = plain)")
    e.add_argument("--batch-size", type=int, default=256)
    e.add_argument("--bf16", action="store_true", help="bf16 autocast for the forward pass")
    e.add_argument("--no-cache", action="store_true", help="ignore and do not fill the cache")
    e.add_argument("--engine", default="local", choices=["local", "ray"],
                   help="local, or Ray actors over the batches (same file; needs the [dist] extra)")
    e.add_argument("--workers", type=int, default=0,
                   help="Ray actors for --engine ray (default 0: the CPUs, at most 4)")
    e.add_argument("--address", default=None,
                   help="Ray cluster address for --engine ray (default: start a local cluster)")
    add_data_root(e)
    e.set_defaults(func=run_extract)


def run_extract(args: argparse.Namespace) -> int:
    from fmlab.data import ImageTextSplit, open_source
    from fmlab.features import cached_features, save_features
    from fmlab.models import create_backbone
    from fmlab.utils.validation import non_negative_int, positive_int

    positive_int("--batch-size", args.batch_size)
    non_negative_int("--views", args.views)
    non_negative_int("--seed", args.seed)
    extract = None
    if args.engine == "ray":  # checked first: without Ray, one line naming the extra
        from fmlab.features.ray_engine import ray_extractor

        extract = ray_extractor(args.workers, args.address)
    source = open_source(args.data, args.data_root)
    split = source.split(args.split)
    if isinstance(split, ImageTextSplit):  # image-text splits: features of their images
        split = split.images
    bb = create_backbone(args.backbone, weights=args.weights, seed=args.seed)
    fs = cached_features(bb, split, n_views=args.views, seed=args.seed,
                         autocast="bf16" if args.bf16 else None, batch_size=args.batch_size,
                         use_cache=not args.no_cache, extract=extract)
    fs.meta["source"] = args.data
    save_features(fs, args.out)
    print(json.dumps({"out": args.out, "shape": list(fs.features.shape), "cache": fs.meta.get("cache")}))
    return 0
