"""``fmlab caption``: unpaired captioning with CgT-GAN (papers.md #14) and the controlled caption
attack (papers.md #56), on MNIST with templated captions.

``train`` runs one stage (``stage: clip | lm | cgt`` in ``configs/caption/*.yaml``); ``eval``
scores a captioner on the test images; ``attack`` runs the feature-space / output-layer attacks,
the attack generator and the transfer test (``configs/caption/attack_mnist.yaml``).
"""

from __future__ import annotations

import argparse
import json

from fmlab.cli.common import add_train_arguments, train_paths

_TRAIN = "configs/caption/cgt_clip_cos.yaml"
_ATTACK = "configs/caption/attack_mnist.yaml"


def add_parser(sub) -> argparse.ArgumentParser:
    """Add ``fmlab caption`` with ``train``, ``eval`` and ``attack``."""
    p = sub.add_parser("caption", help="CgT-GAN unpaired captioning and controlled caption attacks",
                       description="Captioning of MNIST digits from unpaired images and sentences "
                                   "(CgT-GAN) and adversarial control of the captions.")
    s = p.add_subparsers(dest="caption_command", metavar="SUBCOMMAND")
    s.required = True
    t = s.add_parser("train", help="one stage: clip (image-text model), lm (reference LM), cgt (captioner)",
                     description="Settings: --config, then --set. Stages lm and cgt name a clip run "
                                 "(clip=RUN_DIR).")
    add_train_arguments(t, _TRAIN, "trainer.max_steps=50 or reward.lam=0.7")
    t.set_defaults(func=run_train)
    e = s.add_parser("eval", help="BLEU-4, CIDEr-D, perplexity, digit accuracy on the test images")
    e.add_argument("--model", required=True, help="run directory of a cgt stage")
    e.add_argument("--lm", default=None, help="run directory of an lm stage (perplexity)")
    e.add_argument("--limit", type=int, default=0, help="first M test images (0: the run's test_images)")
    e.add_argument("--json", default=None, help="also write the metrics here")
    e.add_argument("--sheet", default=None, help="also write a PNG of 12 test images with captions")
    e.set_defaults(func=run_eval)
    a = s.add_parser("attack", help="targeted caption attacks: success vs eps, feature vs output, transfer",
                     description="Settings: --config, then --set (victim=RUN_DIR transfer=RUN_DIR). "
                                 "Writes OUT/attack.json, OUT/success_vs_eps.png, OUT/attacked.png.")
    a.add_argument("--config", default=None, help=f"e.g. {_ATTACK}")
    a.add_argument("--out", required=True, help="output folder")
    a.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. victim=runs/caption/cgt_s0 (repeatable)")
    a.set_defaults(func=run_attack)
    return s


def run_train(args: argparse.Namespace) -> int:
    from fmlab.experiments.caption import run_caption_train
    from fmlab.experiments.caption_config import CaptionTrainConfig, load_caption_config

    config, out, resume = train_paths(args, _TRAIN)
    cfg = load_caption_config(config, CaptionTrainConfig, args.overrides)
    res = run_caption_train(cfg, out, resume=resume)
    logs = ", ".join(f"{k} {v:.4g}" for k, v in res.items() if k not in ("step", "seconds"))
    print(f"caption train ({cfg.stage}): step {res['step']}, {logs} in {res['seconds']:.0f}s; run in {out}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from fmlab.experiments.caption import caption_sheet, evaluate_captioner, load_captioner, load_splits
    from fmlab.experiments.caption_config import CaptionDataConfig
    from fmlab.utils.io import write_json
    from fmlab.utils.validation import non_negative_int

    non_negative_int("--limit", args.limit)
    out = evaluate_captioner(args.model, args.lm, args.limit)
    for k, v in out.items():
        if k != "examples":
            print(f"{k:18s} {v:.4f}" if isinstance(v, float) else f"{k:18s} {v}")
    for ref, cap in out["examples"]:
        print(f"  {ref!r:>52} -> {cap!r}")
    if args.json:
        write_json(args.json, out)
    if args.sheet:
        bundle = load_captioner(args.model)
        sp = load_splits(CaptionDataConfig(**bundle.info["data"]))
        caption_sheet(bundle, sp.images["test"][:12], args.sheet, f"greedy captions: {args.model}")
        print(f"sample sheet: {args.sheet}")
    return 0


def run_attack(args: argparse.Namespace) -> int:
    from pathlib import Path

    from fmlab.experiments.caption_attack import run_caption_attack
    from fmlab.experiments.caption_config import CaptionAttackConfig, load_caption_config

    cfg = load_caption_config(args.config, CaptionAttackConfig, args.overrides)
    res = run_caption_attack(cfg, Path(args.out))
    print(json.dumps(res["summary"], indent=1))
    return 0
