"""``fmlab gan unlearn``: Adapt-then-Unlearn a class from a pre-trained generator."""

from __future__ import annotations

import argparse
from pathlib import Path

from fmlab.cli.common import (
    add_data_root,
    add_db,
    add_generator,
    arch_kwargs,
    no_empty_dir_on_error,
    resolve_db,
)


def add_parser(gan_subparsers) -> None:
    p = gan_subparsers.add_parser(
        "unlearn", help="remove a class from a generator (Adapt-then-Unlearn)",
        description="Split G's samples with a classifier (or take --negatives/--positives), "
                    "adapt a copy to the negatives with EWC, then train G on the positives "
                    "with a repulsion from the adapted weights. Writes OUT/generator.safetensors "
                    "(+ .json), samples_{before,adapted,after}.png and report.json.")
    add_generator(p, required=True)
    p.add_argument("--discriminator", default=None,
                   help="D state dict (same --arch); default: the run directory's checkpoint")
    p.add_argument("--classifier", default="lenet5_mnist", help="backbone with a classifier head")
    p.add_argument("--classifier-weights", default=None,
                   help="default: $FMLAB_DATA/weights/mnist_small/lenet_epoch=12_test_acc=0.991.pth")
    p.add_argument("--target-class", type=int, required=True, help="class to unlearn")
    p.add_argument("--negatives", default=None, help="npz with uint8 'images' to adapt to")
    p.add_argument("--positives", default=None, help="npz with uint8 'images' to keep")
    p.add_argument("--repulsion", default="nl2", choices=["nl2", "el2", "il2"])
    p.add_argument("--gamma", type=float, default=1.0,
                   help="repulsion strength on d/d0 (d0 = distance at the start of stage 2)")
    p.add_argument("--ewc-lambda", type=float, default=1.0)
    p.add_argument("--adapted-models", type=int, default=1, help="M adapted models (seeds)")
    p.add_argument("--adapt-steps", type=int, default=400)
    p.add_argument("--unlearn-steps", type=int, default=1000)
    p.add_argument("--lr-g", type=float, default=2e-4, help="stage-2 generator learning rate")
    p.add_argument("--lr-d", type=float, default=2e-4, help="stage-2 discriminator learning rate")
    p.add_argument("--n-eval", type=int, default=5000, help="samples for the metrics")
    p.add_argument("--reference", default="mnist:test", help="real images SOURCE:SPLIT for FID")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output directory")
    add_data_root(p)
    add_db(p, default_help="OUT/fmlab.db")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fmlab.experiments.unlearn import UnlearnConfig, run_unlearn
    from fmlab.gan.unlearn import StageConfig

    kw = arch_kwargs(args)
    cfg = UnlearnConfig(
        generator=args.generator, discriminator=args.discriminator, arch=args.arch,
        arch_kwargs=kw, classifier=args.classifier, classifier_weights=args.classifier_weights,
        target_class=args.target_class, negatives=args.negatives, positives=args.positives,
        repulsion=args.repulsion, gamma=args.gamma, ewc_lambda=args.ewc_lambda,
        adapted_models=args.adapted_models, n_eval=args.n_eval, reference=args.reference,
        seed=args.seed, out=Path(args.out), data_root=args.data_root,
        adapt=StageConfig(steps=args.adapt_steps),
        unlearn=StageConfig(steps=args.unlearn_steps, lr_g=args.lr_g, lr_d=args.lr_d),
        db=resolve_db(args, args.out))
    with no_empty_dir_on_error(args.out):
        rep = run_unlearn(cfg)
    b, a = rep["metrics"]["before"], rep["metrics"]["after"]
    fp = (f"; FID on positives {b['fid_positives']:.1f} -> {a['fid_positives']:.1f}"
          if b.get("fid_positives") is not None and a.get("fid_positives") is not None else "")
    print(f"class {args.target_class} share {b['target_share']:.3f} -> {a['target_share']:.3f}; "
          f"FID {b['fid']:.1f} -> {a['fid']:.1f}{fp} ({args.repulsion}, gamma {args.gamma})")
    print(f"wrote {args.out}/generator.safetensors, report.json, samples_*.png")
    return 0
