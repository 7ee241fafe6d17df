"""``fmlab str``: DPTR text recognition on ``strings`` — align towers, pre-train on text, fine-tune, eval."""

from __future__ import annotations

import argparse

from fmlab.cli.common import add_data_root, add_db, add_train_arguments, resolve_db, train_paths

_EXAMPLES = {"align": "configs/str/align.yaml", "pretrain": "configs/str/pretrain_orp.yaml",
             "finetune": "configs/str/finetune.yaml"}


def _train_parser(s, name: str, helptext: str) -> argparse.ArgumentParser:
    t = s.add_parser(name, help=helptext, description=helptext)
    add_train_arguments(t, _EXAMPLES[name], "trainer.max_steps=50 or data.limit=100")
    t.set_defaults(func=run_train, str_command=name)
    return t


def add_parser(sub) -> None:
    p = sub.add_parser("str", help="DPTR text recognition: align, pretrain (text only), finetune, eval",
                       description="Decoder pre-training with text for sequence recognition on strings "
                                   "sources (papers.md entry 57).")
    s = p.add_subparsers(dest="str_command", metavar="SUBCOMMAND")
    s.required = True
    _train_parser(s, "align", "align the image and text towers (CLIP stage) on string images + transcriptions")
    _train_parser(s, "pretrain", "pre-train the decoder on text-tower tokens (orp.perturb: ORP on/off)")
    f = _train_parser(s, "finetune", "fine-tune the decoder on image-tower tokens of data.limit labelled strings")
    f.add_argument("--init", default=None, help="a pretrain run directory, or none (decoder from scratch)")
    e = s.add_parser("eval", help="sequence and character accuracy on a strings split")
    e.add_argument("--model", required=True, help="run directory of fmlab str pretrain or finetune")
    e.add_argument("--data", default=None, help="strings?... spec (default: the run's source)")
    e.add_argument("--split", default="test")
    e.add_argument("--limit", type=int, default=0, help="first M strings of the split (0: all)")
    add_data_root(e)
    add_db(e)
    e.set_defaults(func=run_eval)


def run_train(args: argparse.Namespace) -> int:
    from fmlab.errors import ConfigError
    from fmlab.experiments import str as wf
    from fmlab.experiments.str_config import AlignConfig, FinetuneConfig, PretrainConfig, load_str_config

    config, out, resume = train_paths(args, _EXAMPLES[args.str_command])
    overrides = list(args.overrides)
    if args.str_command == "finetune":
        if args.init and resume:
            raise ConfigError("--resume reads init from the run's config.yaml; drop --init")
        if not args.init and not resume:
            raise ConfigError("--init: give a pretrain run directory or none")
        overrides += [f"init={args.init}"] if args.init else []
    cls = {"align": AlignConfig, "pretrain": PretrainConfig, "finetune": FinetuneConfig}[args.str_command]
    cfg = load_str_config(config, cls, overrides)
    run = {"align": wf.run_align, "pretrain": wf.run_pretrain, "finetune": wf.run_finetune}[args.str_command]
    res = run(cfg, out, resume=resume)
    logs = ", ".join(f"{k} {v:.4g}" for k, v in res.items() if k not in ("step", "seconds") and v is not None)
    print(f"str {args.str_command}: step {res['step']}, {logs} in {res['seconds']:.0f}s; run in {out}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from fmlab.experiments.str import run_str_eval
    from fmlab.utils.validation import non_negative_int

    out = run_str_eval(args.model, args.data, args.split, non_negative_int("--limit", args.limit),
                       args.data_root, resolve_db(args))
    for k in ("sequence_acc", "char_acc", "n_strings"):
        print(f"{k:14s} {out[k]:.4f}" if isinstance(out[k], float) else f"{k:14s} {out[k]}")
    for true, pred in out["examples"]:
        print(f"  {true!r:>24} -> {pred!r}")
    return 0
