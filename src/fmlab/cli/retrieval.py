"""``fmlab retrieval domains | train | eval | examples``: Dark Side augmentation for retrieval.

Each handler parses, calls one workflow function of :mod:`fmlab.experiments.darkside` and prints.
A study: ``domains`` writes the translator's day/night npz, ``fmlab translate train`` learns
day→night on them, ``train`` fine-tunes a GeM retrieval network per arm
(``augment.positives=none|translated|degraded``) and ``eval`` scores a run or the pre-trained
network (class-level mAP, day→day, night→day, night→night).
"""

from __future__ import annotations

import argparse

from fmlab.cli.common import add_train_arguments, train_paths

EXAMPLE = "configs/retrieval/darkside_cifar10.yaml"


def add_parser(sub) -> argparse._SubParsersAction:
    """Add ``fmlab retrieval`` and its subcommands."""
    p = sub.add_parser("retrieval", help="metric learning for retrieval (Dark Side augmentation)",
                       description="GeM retrieval networks trained with contrastive/triplet "
                                   "tuples, diverse anchor mining and translated night positives.")
    rsub = p.add_subparsers(dest="retrieval_command", metavar="SUBCOMMAND")
    rsub.required = True
    d = rsub.add_parser("domains", help="write the translator's day.npz / night.npz (+ preview)")
    d.add_argument("--config", default=None, help=f"e.g. {EXAMPLE}")
    d.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    d.add_argument("--out", required=True, help="output folder")
    d.set_defaults(func=run_domains)
    t = rsub.add_parser("train", help="fine-tune a retrieval network (one arm) and score it",
                        description="RUN_DIR receives config.yaml, metrics.jsonl, checkpoints/, "
                                    "encoder.safetensors + encoder.json and report.json.")
    add_train_arguments(t, EXAMPLE, "augment.positives=translated")
    t.set_defaults(func=run_train)
    e = rsub.add_parser("eval", help="class-level retrieval mAP of a run or of the initial network")
    e.add_argument("--model", default=None, help="a finished run directory (default: the "
                                                 "config's pre-trained network, untrained)")
    e.add_argument("--config", default=None, help=f"without --model, e.g. {EXAMPLE}")
    e.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    e.add_argument("--out", default=None, help="also write the numbers to this JSON file")
    e.set_defaults(func=run_eval)
    x = rsub.add_parser("examples", help="PNG: day / real night / translated night test images")
    x.add_argument("--config", default=None, help=f"e.g. {EXAMPLE}")
    x.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    x.add_argument("--translator", required=True, help="a `fmlab translate train` run directory")
    x.add_argument("--n", type=int, default=12, help="images per row")
    x.add_argument("--out", required=True, help="PNG file")
    x.set_defaults(func=run_examples)
    return rsub


def _maps(m: dict) -> str:
    return ", ".join(f"{k.replace('_to_', '→')} {v:.4f}" for k, v in m.items())


def run_domains(args: argparse.Namespace) -> int:
    from fmlab.experiments.darkside import load_darkside_config, write_domains

    info = write_domains(load_darkside_config(args.config, args.overrides), args.out)
    print(f"wrote {info['out']}/day.npz ({info['day']} images), night.npz ({info['night']}) "
          "and domains.png")
    return 0


def run_train(args: argparse.Namespace) -> int:
    from fmlab.experiments.darkside import load_darkside_config, run_darkside

    config, out, resumed = train_paths(args, EXAMPLE)
    cfg = load_darkside_config(config, args.overrides)
    rep = run_darkside(cfg, out, resume=resumed)
    print(f"trained {cfg.name} (positives {rep['positives']}, seed {rep['seed']}) to step "
          f"{rep['step']} in {rep['train_cpu_s'] / 60:.2f} CPU-min; mAP {_maps(rep['mAP'])}; "
          f"wrote {out}/report.json")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from fmlab.errors import ConfigError
    from fmlab.experiments.darkside import (build_net, evaluate_net, load_darkside_config,
                                            load_domains, load_net)
    from fmlab.utils.io import write_json

    if args.model is not None:
        if args.config is not None or args.overrides:
            raise ConfigError("--model reads the run's own config; drop --config/--set")
        net, cfg = load_net(args.model)
    else:
        cfg = load_darkside_config(args.config, args.overrides)
        net = build_net(cfg)
    maps = evaluate_net(net, load_domains(cfg))
    print(f"mAP {_maps(maps)} ({args.model or 'initial network'})")
    if args.out:
        write_json(args.out, {"model": args.model, "name": cfg.name, "mAP": maps})
    return 0


def run_examples(args: argparse.Namespace) -> int:
    from fmlab.experiments.darkside import load_darkside_config, write_examples
    from fmlab.utils.validation import positive_int

    positive_int("--n", args.n)
    path = write_examples(load_darkside_config(args.config, args.overrides), args.translator,
                          args.out, args.n)
    print(f"wrote {path} (rows: day, real night, translated night)")
    return 0
