"""``fmlab text eval``: perplexity / pseudo-perplexity / MLM or RTD accuracy on held-out text."""

from __future__ import annotations

import argparse
import json

from fmlab.cli.common import add_data_root, add_db, resolve_db


def add_parser(group) -> None:
    p = group.add_parser("eval", help="perplexity or MLM / replaced-token accuracy on held-out text",
                         description="Score RUN_DIR/model on held-out text: perplexity and "
                                     "continuation perplexity (decoders, T5), MLM accuracy and "
                                     "pseudo-perplexity (BERT/ERNIE), replaced-token detection "
                                     "(ELECTRA, with RUN_DIR/generator when present).")
    p.add_argument("--model", required=True, help="RUN_DIR/model")
    p.add_argument("--data", required=True, help="text source (see `fmlab data list`)")
    p.add_argument("--split", default="test", help="split scored (default test)")
    p.add_argument("--block-size", type=int, default=None,
                   help="tokens per block (default min(128, the model's positions))")
    p.add_argument("--max-blocks", type=int, default=64, help="score the first N blocks (64)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seed", type=int, default=0, help="seed of the masking draws")
    p.add_argument("--pppl-blocks", type=int, default=4,
                   help="blocks scored by pseudo-perplexity (encoders; one pass per token)")
    p.add_argument("--mode-token", default=None, help="UL2 mode token before the context, e.g. [S2S]")
    p.add_argument("--out", default=None, help="write the result as JSON to this file")
    add_data_root(p)
    add_db(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fmlab.errors import ConfigError
    from fmlab.results import Protocol, ResultsStore
    from fmlab.text.evaluate import evaluate_text_model
    from fmlab.utils.io import write_json

    for name in ("max_blocks", "batch_size", "pppl_blocks"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')}: {getattr(args, name)} must be >= 1")
    rec = evaluate_text_model(args.model, args.data, args.split, block_size=args.block_size,
                              max_blocks=args.max_blocks, batch_size=args.batch_size,
                              seed=args.seed, pppl_blocks=args.pppl_blocks,
                              mode_token=args.mode_token, data_root=args.data_root)
    print(json.dumps(rec, indent=2))
    if args.out:
        write_json(args.out, rec)
    db = resolve_db(args)
    if db is not None:
        protocol = Protocol(f"{args.data}:{args.split}", rec["split_hash"], rec["model"],
                            rec["weights_sha256"], {k: rec[k] for k in ("kind", "n_blocks",
                                                                          "block_size", "mode_token")})
        ResultsStore(db).record("text_eval", protocol, [{"seed": rec["seed"], **rec["metrics"]}],
                                list(rec["metrics"]))
    return 0
