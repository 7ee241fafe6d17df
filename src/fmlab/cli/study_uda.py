"""``fmlab study uda`` and ``fmlab study pseudolabel``: text studies of continued pre-training for
unsupervised domain adaptation (papers.md #15) and of pseudo-label pre-training (papers.md #18)."""

from __future__ import annotations

import argparse
import sys

from fmlab.cli.common import add_db, resolve_db


def _common(p: argparse.ArgumentParser, config: str) -> None:
    p.add_argument("--config", default=None,
                   help=f"YAML of the study (default: the built-in defaults of {config})")
    p.add_argument("--out", required=True,
                   help="output folder (arms.json ledger, arms/, report.md, accuracy.png); "
                        "run again to resume: finished arms are not redone")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting, e.g. budget.tokens=65536 or seeds=[1] (repeatable)")
    add_db(p, default_help="OUT/fmlab.db")


def add_parser(sub):
    """Attach ``uda`` and ``pseudolabel`` to the ``study`` group's subparsers."""
    p = sub.add_parser(
        "uda", help="continued MLM pre-training for unsupervised domain adaptation (SST-2 "
                    "phrases → sentences)",
        description="Source-only fine-tuning vs continued MLM pre-training on the unlabelled "
                    "target (or, as a control, source) text then fine-tuning on the source, with "
                    "a linear head and with the prompt (label-word) classifier; scored on the "
                    "target test set. Writes OUT/report.md and OUT/accuracy.png.")
    _common(p, "configs/study/uda.yaml")
    p.set_defaults(func=run_uda)
    p = sub.add_parser(
        "pseudolabel", help="pseudo-label pre-training vs MLM vs none at 1/10/100 %% of the labels",
        description="A teacher fine-tuned on the labelled set labels an unlabelled in-domain pool; "
                    "the student pre-trains on those predictions, then fine-tunes; compared with "
                    "MLM continued pre-training on the same pool (same token budget) and with no "
                    "further pre-training. Writes OUT/report.md and OUT/accuracy.png.")
    _common(p, "configs/study/pseudolabel.yaml")
    p.set_defaults(func=run_pseudolabel)
    return sub


def run_uda(args: argparse.Namespace) -> int:
    from fmlab.studies.cpt_arms import command_line
    from fmlab.studies.uda import load_uda_config, run_uda as run

    cfg = load_uda_config(args.config, args.overrides)
    info = run(cfg, args.out, db=resolve_db(args, args.out), command=command_line(sys.argv[1:]))
    print(f"{len(info['records'])} fine-tuning records; wrote {info['report']} and "
          f"{args.out}/accuracy.png")
    return 0


def run_pseudolabel(args: argparse.Namespace) -> int:
    from fmlab.studies.pseudolabel import load_pseudolabel_config, run_pseudolabel as run
    from fmlab.studies.cpt_arms import command_line

    cfg = load_pseudolabel_config(args.config, args.overrides)
    info = run(cfg, args.out, db=resolve_db(args, args.out), command=command_line(sys.argv[1:]))
    print(f"{len(info['records'])} fine-tuning records; wrote {info['report']} and "
          f"{args.out}/accuracy.png")
    return 0
