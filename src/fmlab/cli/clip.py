"""``fmlab clip``: train image-text models; zero-shot classification and retrieval."""

from __future__ import annotations

import argparse

from fmlab.cli.common import add_data_root, add_db, add_train_arguments, resolve_db, train_paths


def add_parser(sub) -> None:
    p = sub.add_parser("clip", help="image-text models: train (CLIP/SigLIP/LiT), zeroshot, retrieval",
                       description="Train image-text models through the engine and evaluate them "
                                   "(zero-shot classification, image-text retrieval).")
    s = p.add_subparsers(dest="clip_command", metavar="SUBCOMMAND")
    s.required = True

    t = s.add_parser("train", help="train an image-text model from a YAML config")
    add_train_arguments(t, "configs/clip/lit_cifar5_minilm.yaml")
    t.set_defaults(func=run_train)

    for name, helptext in (("zeroshot", "zero-shot classification (acc@1, acc@5, mean per-class recall)"),
                           ("retrieval", "image<->text recall@1/5/10 (any of an image's captions counts)")):
        e = s.add_parser(name, help=helptext)
        e.add_argument("--model", required=True,
                       help="open_clip:<arch>[:<tag>] or a run directory of fmlab clip train")
        e.add_argument("--data", required=True, help="source: cifar10, npz:PATH, coco_mini, csv:PATH, ...")
        e.add_argument("--split", default=None,
                       help="split to evaluate (default: test for zeroshot, val for retrieval)")
        e.add_argument("--batch-size", type=int, default=64)
        if name == "retrieval":  # InterBERT: re-rank the --model's top-k by a fusion encoder
            e.add_argument("--rerank", default=None, metavar="RUN_DIR",
                           help="an InterBERT run (loss.name: interbert) whose matching score "
                                "reorders the top --rerank-k candidates of --model")
            e.add_argument("--rerank-k", type=int, default=10)
        if name == "zeroshot":
            e.add_argument("--templates", default=None, help="JSON list of templates with {}")
            e.add_argument("--classes", default=None,
                           help="comma list of class names/indices to restrict to")
            e.add_argument("--class-names", default=None,
                           help="comma list: the words prompts use for the classes, one per "
                                "class in the source's order (e.g. zero,one,...,nine for mnist)")
        add_data_root(e)
        add_db(e)
        e.set_defaults(func=run_zeroshot if name == "zeroshot" else run_retrieval)


def run_train(args: argparse.Namespace) -> int:
    from fmlab.experiments.clip import load_clip_config, run_clip_train

    config, out, resumed = train_paths(args, "configs/clip/<name>.yaml")
    cfg = load_clip_config(config, args.overrides)
    res = run_clip_train(cfg, out, resume=resumed)
    loss = f", loss {res.last_loss:.4g}" if res.last_loss is not None else ""
    print(f"trained {cfg.model.image}+{cfg.model.text} ({cfg.loss.name}) to step {res.step}{loss} "
          f"in {res.seconds:.0f}s; model in {out} (use --model {out})")
    return 0


def _print(metrics: dict) -> None:
    for k, v in metrics.items():
        print(f"{k:28s} {v:.4f}" if isinstance(v, float) else f"{k:28s} {v}")


def run_zeroshot(args: argparse.Namespace) -> int:
    from fmlab.experiments.clip import run_zeroshot as zs
    from fmlab.utils.validation import positive_int

    positive_int("--batch-size", args.batch_size)
    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    names = ([c.strip() for c in args.class_names.split(",")] if args.class_names else None)
    _print(zs(args.model, args.data, args.split or "test", args.templates, classes,
              args.data_root, resolve_db(args), args.batch_size, class_names=names))
    return 0


def run_retrieval(args: argparse.Namespace) -> int:
    from fmlab.experiments.clip import run_retrieval as rt
    from fmlab.utils.validation import positive_int

    positive_int("--batch-size", args.batch_size)
    positive_int("--rerank-k", args.rerank_k)
    _print(rt(args.model, args.data, args.split or "val", args.data_root, resolve_db(args),
              args.batch_size, rerank=args.rerank, rerank_k=args.rerank_k))
    return 0
