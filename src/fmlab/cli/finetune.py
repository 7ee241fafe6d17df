"""``fmlab finetune``: PEFT methods × shots × seeds through the engine, on the adapt split files."""

from __future__ import annotations

import argparse
from pathlib import Path

from fmlab.cli.common import add_backbone, add_data_root, add_db, resolve_db

EPILOG = """\
Method options: --option KEY=VALUE applies to every method given, --option METHOD.KEY=VALUE to
one (e.g. --option lora.r=8 --option lora.alpha=16 --option vpt.num_tokens=5
--option pela.compression_ratio=2). --targets takes module-name patterns (fnmatch, or re:REGEX).
Training settings: --set KEY=VALUE, e.g. --set trainer.max_steps=500 --set optim.lr=1e-3
--set augment=crop --set distill_steps=200 --set trainer.device=cuda --set trainer.bf16=true.
trainer.max_steps=0 trains trainer.epochs full epochs instead.
Defaults per method (each method's recipe; AdamW, cosine, 10% warmup, batch 64):
"""


DESCRIPTION = (
    "Train a new task head plus a PEFT method ({methods}) on the training images of fmlab adapt's "
    "split files, keep the state best on their validation images, score on the test split. Writes "
    "results.json, summary.md, results-store rows and one adapter per run in "
    "OUT/<method>_<shots>_<seed>/adapter/.")


def _lazy_method_help(p: argparse.ArgumentParser, method: argparse.Action) -> None:
    """Fill the method list and defaults into the help when it is printed, from the registry.

    Lazy because the registry lives in ``fmlab.peft`` (torch): building every sub-command's parser
    must not import it, or every ``fmlab`` call would start seconds slower.
    """
    plain = p.format_help

    def format_help() -> str:
        from fmlab.experiments.finetune_settings import finetune_methods, methods_help

        names = finetune_methods()
        p.description = DESCRIPTION.format(methods=", ".join(names))
        p.epilog = EPILOG + methods_help() + "\n"
        method.help = "comma list of " + ",".join(names)
        return plain()

    p.format_help = format_help  # type: ignore[method-assign]


REQUIRED = ("backbone", "data", "method", "out")


def add_parser(sub) -> argparse._SubParsersAction:
    """Add ``fmlab finetune``; returns its (optional) sub-commands, e.g. ``pretrain-peft``.

    ``--backbone``/``--data``/``--method``/``--out`` are checked in :func:`run`, not by argparse:
    argparse would demand them of ``fmlab finetune SUBCOMMAND`` too.
    """
    p = sub.add_parser(
        "finetune", help="fine-tune a backbone with PEFT methods under the few-shot protocol",
        description=DESCRIPTION.format(methods="see --help"),
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_backbone(p, required=False)
    p.add_argument("--data", help="labelled image source (required)")
    method = p.add_argument("--method", help="comma list of method names (required)")
    p.add_argument("--shots", default="16", help="comma list of shots per class, or 'all'")
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--option", action="append", default=[], metavar="[METHOD.]KEY=VALUE",
                   help="option of the PEFT method (repeatable)")
    p.add_argument("--targets", default=None, help="comma list of module-name patterns")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="training setting override (repeatable)")
    p.add_argument("--test-split", default=None, help="evaluation split (default: test)")
    p.add_argument("--max-test", type=int, default=None,
                   help="score on a seeded random subset of N test images (smoke runs)")
    p.add_argument("--init-from", default=None, metavar="PVP_DIR",
                   help="start the PEFT modules from `fmlab finetune pretrain-peft`'s (PVP); "
                        "same method and options, fresh head")
    p.add_argument("--out", help="output directory (required)")
    add_data_root(p)
    add_db(p, default_help="OUT/fmlab.db")
    _lazy_method_help(p, method)
    p.set_defaults(func=run)
    return p.add_subparsers(dest="finetune_command", metavar="SUBCOMMAND")


def run(args: argparse.Namespace) -> int:
    from fmlab.errors import ConfigError
    from fmlab.utils.parsing import parse_ints, parse_shots
    from fmlab.experiments.finetune import FinetuneConfig, parse_options, run_finetune

    missing = [f"--{name}" for name in REQUIRED if getattr(args, name) is None]
    if missing:
        raise ConfigError("fmlab finetune: the following arguments are required: "
                          + ", ".join(missing))
    methods = [m.strip() for m in args.method.split(",") if m.strip()]
    if args.max_test is not None and args.max_test < 1:
        raise ConfigError(f"--max-test: {args.max_test} must be >= 1")
    targets = None
    if args.targets is not None:
        targets = [t.strip() for t in args.targets.split(",") if t.strip()]
        if not targets:
            raise ConfigError("--targets: give at least one pattern")
    cfg = FinetuneConfig(
        backbone=args.backbone, weights=args.weights, data=args.data, out=Path(args.out),
        methods=methods, shots=parse_shots(args.shots), seeds=parse_ints(args.seeds, "--seeds"),
        options=parse_options(args.option, methods), targets=targets, overrides=args.overrides,
        test_split=args.test_split, max_test=args.max_test, data_root=args.data_root,
        db=resolve_db(args, args.out), init_seed=args.seed,
        init_from=Path(args.init_from) if args.init_from else None,
    )
    run_finetune(cfg)
    print((Path(args.out) / "summary.md").read_text())
    print(f"wrote {args.out}/results.json, summary.md and one adapter per run")
    return 0
