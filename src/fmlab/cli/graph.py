"""``fmlab graph``: W2PGNN feasibility of graph pre-training, GraphCL pre-training, GIN fine-tuning."""

from __future__ import annotations

import argparse
import sys

from fmlab.cli.common import add_data_root, add_train_arguments, train_paths

_EXAMPLES = {"pretrain": "configs/graph/graphcl.yaml", "finetune": "configs/graph/finetune.yaml"}


def add_parser(sub) -> None:
    p = sub.add_parser("graph", help="graph pre-training: W2PGNN feasibility, GraphCL pretrain, GIN finetune",
                       description="Graph pre-training on TU datasets (tu:PATH or names under "
                                   "$FMLAB_DATA/tu_graphs): the W2PGNN feasibility score (papers.md "
                                   "entry 3), GraphCL pre-training of a GIN and its fine-tuning.")
    s = p.add_subparsers(dest="graph_command", metavar="SUBCOMMAND")
    s.required = True
    f = s.add_parser("feasibility", help="W2PGNN score 1 - min_alpha d(graphon(D), sum alpha_i B_i)",
                     description="Fit graphon bases (k-means of the pre-training graphs' step-function "
                                 "graphons) and score the downstream dataset's graphon against their "
                                 "convex mixes; prints a table, then the score as the last number.")
    f.add_argument("--pretrain", required=True, help="comma-separated datasets, e.g. PROTEINS,ENZYMES")
    f.add_argument("--downstream", required=True, help="one dataset, e.g. MUTAG or tu:/path/DS")
    f.add_argument("--resolution", type=int, default=16, help="K of the K x K graphons (default 16)")
    f.add_argument("--bases", type=int, default=4, help="number of graphon bases (k-means clusters; default 4)")
    f.add_argument("--method", default="sas", choices=("sas", "usvt"), help="graphon estimator (default sas)")
    f.add_argument("--seed", type=int, default=0, help="k-means seed")
    f.add_argument("--json", default=None, help="also write the result as JSON here")
    add_data_root(f)
    f.set_defaults(func=run_feasibility)
    for name, helptext in (("pretrain", "pre-train a GIN with GraphCL on data.pretrain"),
                           ("finetune", "fine-tune a GIN + linear head on data.downstream (init: a "
                                        "pretrain run, or empty for scratch); prints the test accuracy")):
        t = s.add_parser(name, help=helptext, description=helptext)
        add_train_arguments(t, _EXAMPLES[name], "trainer.max_steps=50, data.limit=100")
        t.set_defaults(func=run_train)


def run_feasibility(args: argparse.Namespace) -> int:
    from fmlab.experiments.graph import run_feasibility as feas
    from fmlab.utils.io import write_json
    from fmlab.utils.validation import non_negative_int, positive_int

    positive_int("--resolution", args.resolution)
    positive_int("--bases", args.bases)
    non_negative_int("--seed", args.seed)
    res = feas(args.pretrain, args.downstream, args.resolution, args.bases, args.method, args.seed,
               args.data_root)
    print(f"{'dataset':<12} {'role':<10} {'graphs':>6} {'nodes':>7} {'edges':>7}")
    for r in res["datasets"]:
        print(f"{r['name']:<12} {r['role']:<10} {r['graphs']:>6} {r['mean_nodes']:>7.1f} {r['mean_edges']:>7.1f}")
    print(f"bases {res['bases']} (weights {res['basis_weights']}), alpha {res['alpha']}, "
          f"{res['method']} {res['resolution']}x{res['resolution']}, {res['seconds']:.2f}s")
    if res["warning"]:
        print(f"fmlab: warning: {res['warning']}", file=sys.stderr)
    if args.json:
        write_json(args.json, res)
    print(f"feasibility {res['score']:.4f}")
    return 0


def run_train(args: argparse.Namespace) -> int:
    from fmlab.experiments.graph import run_graph_finetune, run_graph_pretrain
    from fmlab.experiments.graph_config import load_graph_config

    config, out, resume = train_paths(args, _EXAMPLES[args.graph_command])
    cfg = load_graph_config(config, args.graph_command, args.overrides)
    if args.graph_command == "pretrain":
        res = run_graph_pretrain(cfg, out, resume=resume)
        loss = f", loss {res['loss']:.4g}" if res["loss"] is not None else ""
        print(f"graph pretrain: {res['graphs']} graphs, step {res['step']}/{res['max_steps']}{loss}; "
              f"encoder {res['encoder']}")
    else:
        res = run_graph_finetune(cfg, out, resume=resume)
        print(f"graph finetune {res['dataset']} from {res['init']}: step {res['step']}, val accuracy "
              f"{res['val_accuracy']:.4f}, test accuracy {res['accuracy']:.4f}; {out}/results.json")
    return 0
