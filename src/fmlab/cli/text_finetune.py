"""``fmlab text finetune``: sequence classification on a pre-trained or random-init text model."""

from __future__ import annotations

import argparse
from pathlib import Path

from fmlab.cli.common import add_data_root, add_db, resolve_db

EPILOG = """\
--model RUN_DIR/model is the save_pretrained folder written by `fmlab text pretrain` (config.json,
model.safetensors, tokenizer.json); random:RUN_DIR/model is the same architecture, config and
tokenizer with weights drawn from each run's seed (the from-random-initialisation baseline).
Settings: configs/text/finetune.yaml; override with --set, e.g. --set trainer.max_steps=200
--set trainer.batch_size=64 --set trainer.log_every=10 --set data.limit=2000
--set data.max_length=64 --set optim.lr=1e-4 --set patience=2.
Validation is drawn from the train split (data.val_fraction, per class, seeded by the run seed);
the state best on it is restored, and the test split is scored once per seed.
"""


def add_parser(group) -> None:
    p = group.add_parser("finetune", help="fine-tune a text model for sequence classification",
                         description="Fine-tune RUN_DIR/model (or random:RUN_DIR/model) with a "
                                     "linear head on a labelled text task; write results.json, "
                                     "summary.md and results-store rows.",
                         epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="RUN_DIR/model or random:RUN_DIR/model")
    p.add_argument("--task", required=True,
                   help="sst2, chemprot, pico, medabs or jsonl:PATH (text + label)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--config", default=None, help="settings YAML (default: built-in defaults, "
                   "the same as configs/text/finetune.yaml)")
    p.add_argument("--fraction", type=float, default=None,
                   help="train on a seeded fraction of the train split (the same for every seed)")
    p.add_argument("--seeds", default="1,2,3", help="comma list of run seeds (default 1,2,3)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting (repeatable)")
    add_data_root(p)
    add_db(p, default_help="OUT/fmlab.db")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fmlab.engine.config import load_config
    from fmlab.text.finetune import TextFinetuneConfig, TextFinetuneSettings, run_text_finetune
    from fmlab.utils.parsing import parse_ints

    settings = load_config(args.config, TextFinetuneSettings, args.overrides)
    cfg = TextFinetuneConfig(model=args.model, task=args.task, out=Path(args.out),
                             seeds=parse_ints(args.seeds, "--seeds"), settings=settings,
                             fraction=args.fraction, data_root=args.data_root,
                             db=resolve_db(args, args.out))
    run_text_finetune(cfg)
    print((Path(args.out) / "summary.md").read_text())
    print(f"wrote {args.out}/results.json and summary.md")
    return 0
