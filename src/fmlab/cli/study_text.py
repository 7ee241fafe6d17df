"""``fmlab study domain`` and ``fmlab study entigraph``: text studies of issue 19, each arm run
once through the shared engine (a rerun with the same ``--out`` resumes without redoing finished
arms)."""

from __future__ import annotations

import argparse
import shlex
import sys

from fmlab.cli.common import add_db, no_empty_dir_on_error, resolve_db

DOMAIN_HELP = (
    "Pre-train three arms at an equal token budget: general (tokenizer + model on G), continued "
    "(the general model continued on D with G's vocabulary) and domain (tokenizer + model on D "
    "from scratch); fine-tune each on the domain tasks and the general task; measure tokens per "
    "word and domain-term fragmentation under each vocabulary. Writes OUT/report.md, "
    "accuracy.png, macro_f1.png, tokens_per_word.png, study.json, arms.json and results-store "
    "rows.")
ENTIGRAPH_HELP = (
    "Reduced EntiGraph: from a small source corpus, extract entities, synthesise passages about "
    "entity pairs/triples by sentence recombination (the offline stand-in for the LLM), continue "
    "a base model on the synthetic corpus vs on the source repeated for the same tokens, and score "
    "closed-book cloze probes from held-out sentences. Writes OUT/report.md, cloze.png, "
    "study.json, arms.json and results-store rows.")


def _add(sub, name: str, help_: str, description: str, example: str, func) -> None:
    p = sub.add_parser(name, help=help_, description=description)
    p.add_argument("--config", default=None,
                   help=f"YAML of settings, e.g. {example} (default: the built-in defaults, "
                        "the same values)")
    p.add_argument("--out", required=True, help="output folder (rerun it to resume)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting, e.g. budget.tokens=20000 or seeds=[1] (repeatable)")
    add_db(p, default_help="OUT/fmlab.db")
    p.set_defaults(func=func)


def add_parser(group) -> None:
    """Add ``domain`` and ``entigraph`` to the ``study`` group's subparsers (imports nothing heavy)."""
    _add(group, "domain", "domain vs general vs continued pre-training (SOBert, PubMedBERT)",
         DOMAIN_HELP, "configs/study/domain.yaml", run_domain)
    _add(group, "entigraph", "synthetic continued pre-training (EntiGraph, reduced)",
         ENTIGRAPH_HELP, "configs/study/entigraph.yaml", run_entigraph)


def _command() -> str:
    return "fmlab " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def run_domain(args: argparse.Namespace) -> int:
    from fmlab.studies.domain import load_domain_config, run_domain_study

    cfg = load_domain_config(args.config, args.overrides)
    with no_empty_dir_on_error(args.out):
        info = run_domain_study(cfg, args.out, db=resolve_db(args, args.out),
                                commands=[_command()])
    print(f"{len(info['finetune'])} fine-tuning records from {len(info['pretrain'])} pre-training "
          f"arms in {info['seconds']:.0f} s; wrote {args.out}/report.md")
    return 0


def run_entigraph(args: argparse.Namespace) -> int:
    from fmlab.studies.entigraph_study import load_entigraph_config, run_entigraph_study

    cfg = load_entigraph_config(args.config, args.overrides)
    with no_empty_dir_on_error(args.out):
        info = run_entigraph_study(cfg, args.out, db=resolve_db(args, args.out),
                                   commands=[_command()])
    print(f"{len(info['cloze'])} cloze records, {info['probes']['count']} probes, in "
          f"{info['seconds']:.0f} s; wrote {args.out}/report.md")
    return 0
