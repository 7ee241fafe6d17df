"""``fmlab text pretrain``: pre-train a text model with one registered objective (attached to the
``fmlab text`` group by :mod:`fmlab.cli.text`)."""

from __future__ import annotations

import argparse

from fmlab.cli.common import add_train_arguments, train_paths

EXAMPLE = "configs/text/<objective>_<corpus>.yaml"


def add_parser(group) -> None:
    p = group.add_parser(
        "pretrain", help="pre-train a text model (mlm, electra, clm, t5, ul2, ernie)",
        description="Pre-train a small transformers model with one registered text objective "
                    "(the config's objective.name). RUN_DIR receives config.yaml, metrics.jsonl, "
                    "checkpoints/, tokenizer/ and model/ (save_pretrained of the model with its "
                    "pre-training head and the tokenizer: AutoModel.from_pretrained(RUN_DIR/model) "
                    "loads it in plain transformers).")
    add_train_arguments(p, "configs/text/mlm_shakespeare.yaml",
                        "trainer.max_steps=50, data.limit=200 or objective.mask_prob=0.2")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Resolve the run directory, load the config, train, print where the model is."""
    from fmlab.experiments.text_pretrain import load_text_pretrain_config, run_text_pretrain

    config, out, resume = train_paths(args, EXAMPLE)
    cfg = load_text_pretrain_config(config, args.overrides)
    rec = run_text_pretrain(cfg, out, resume=resume)
    how = f" (resumed from step {rec['resumed_from']})" if rec["resumed_from"] is not None else ""
    loss = f", loss {rec['last_loss']:.4g}" if rec["last_loss"] is not None else ""
    print(f"pre-trained {rec['arch']} with {rec['objective']} to step "
          f"{rec['step']}/{rec['max_steps']}{how}{loss}")
    print(f"wrote {rec['paths']['model']} (AutoModel.from_pretrained loads it)")
    return 0
