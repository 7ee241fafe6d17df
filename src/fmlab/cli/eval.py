"""``fmlab eval classify``: accuracy of a backbone's own classifier head."""

from __future__ import annotations

import argparse
import json
import time

from fmlab.cli.common import add_backbone, add_data_root, add_db, resolve_db


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a model", description="Evaluate a model.")
    esub = p.add_subparsers(dest="eval_command", metavar="SUBCOMMAND")
    esub.required = True
    c = esub.add_parser("classify", help="accuracy of a backbone's own head on a split",
                        description="Accuracy of a backbone's own classifier head on a labelled split.")
    add_backbone(c)
    c.add_argument("--data", required=True)
    c.add_argument("--split", default="test")
    c.add_argument("--batch-size", type=int, default=500)
    c.add_argument("--json", action="store_true", help="print one JSON object")
    add_data_root(c)
    add_db(c)
    c.set_defaults(func=run_classify)


def run_classify(args: argparse.Namespace) -> int:
    from fmlab.data import open_source
    from fmlab.evaluate import classify_accuracy
    from fmlab.models import create_backbone
    from fmlab.results import Protocol, ResultsStore
    from fmlab.utils.validation import non_negative_int, positive_int

    positive_int("--batch-size", args.batch_size)
    non_negative_int("--seed", args.seed)
    db = resolve_db(args)
    t0 = time.perf_counter()
    split = open_source(args.data, args.data_root).split(args.split)
    bb = create_backbone(args.backbone, weights=args.weights, seed=args.seed)
    res = classify_accuracy(bb, split, batch_size=args.batch_size)
    seconds = time.perf_counter() - t0
    if db is not None:
        protocol = Protocol.of(args.data, args.split, backbone=bb, split_hash=split.content_hash)
        ResultsStore(db).record("classify", protocol, [{
            "method": "head", "metric": "accuracy", "value": res["accuracy"], "seconds": seconds,
            "extra": {"n": res["n"]}}])
    if args.json:
        print(json.dumps(res))
    else:
        print(f"{bb.name} on {args.data}:{args.split}: accuracy {res['accuracy']:.4f} (n={res['n']})")
    return 0
