"""``fmlab text tokenizer | pretrain | finetune | eval``: the text family's command group.

This module builds the group and the ``tokenizer`` subcommand; the other subcommands live in
their own modules (``fmlab.cli.text_pretrain``, ``fmlab.cli.text_finetune``), each with an
``add_parser(group)``, attached here when present.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util

from fmlab.cli.common import add_data_root

SUBMODULES = ("fmlab.cli.text_pretrain", "fmlab.cli.text_finetune", "fmlab.cli.text_eval")


def add_parser(sub):
    p = sub.add_parser("text", help="text pre-training: tokenizers, pretrain, finetune, eval",
                       description="Text pre-training on small corpora: train tokenizers, "
                                   "pre-train encoders/decoders, fine-tune and evaluate them.")
    tsub = p.add_subparsers(dest="text_command", metavar="SUBCOMMAND")
    tsub.required = True
    tp = tsub.add_parser("tokenizer", help="train and save a tokenizer, report tokens per word",
                         description="Train a WordPiece / unigram / BPE tokenizer on a text "
                                     "source, save it (tokenizer.json) and report tokens per word "
                                     "and the fraction of words split into pieces.")
    tp.add_argument("--data", required=True, help="text source: shakespeare, sst2, chemprot, pico, "
                    "medabs, text:PATH or jsonl:PATH (see `fmlab data list`)")
    tp.add_argument("--kind", default="wordpiece", choices=["wordpiece", "unigram", "bpe"])
    tp.add_argument("--vocab-size", type=int, required=True)
    tp.add_argument("--out", required=True, help="folder for tokenizer.json and tokenizer_stats.json")
    tp.add_argument("--split", default="train", help="split trained on (default train)")
    tp.add_argument("--limit", type=int, default=None, help="train on a seeded subset of N records")
    tp.add_argument("--seed", type=int, default=0)
    tp.add_argument("--cased", action="store_true", help="do not lower-case")
    tp.add_argument("--measure", action="append", default=[], metavar="SOURCE",
                    help="also report the statistics on SOURCE's test split (repeatable)")
    add_data_root(tp)
    tp.set_defaults(func=run_tokenizer)
    for name in SUBMODULES:
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name).add_parser(tsub)
    return tsub


def run_tokenizer(args: argparse.Namespace) -> int:
    from fmlab.text.tokenizer import tokenizer_from_source

    rec = tokenizer_from_source(args.data, args.out, kind=args.kind, vocab_size=args.vocab_size,
                                split=args.split, limit=args.limit, seed=args.seed,
                                lowercase=not args.cased, measure=args.measure,
                                data_root=args.data_root)
    print(f"{rec['kind']} tokenizer, {rec['vocab_size']} tokens, trained on {rec['n_texts']} "
          f"texts of {rec['source']}:{rec['split']} (split hash {rec['split_hash'][:16]})")
    print("| corpus | tokens per word | words split into pieces |")
    print("|---|---|---|")
    for where, s in rec["stats"].items():
        print(f"| {where} | {s['tokens_per_word']:.3f} | {100 * s['split_word_fraction']:.1f} % |")
    print(f"wrote {args.out}/tokenizer.json and tokenizer_stats.json")
    return 0
