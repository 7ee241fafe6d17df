"""``fmlab gan unlearn``: Adapt-then-Unlearn a class from a pre-trained generator.

Settings come from ``--config`` (e.g. ``configs/gan/unlearn_mnist_mlp.yaml``), then the flags
given explicitly, then ``--set`` overrides; every default is the config dataclass's own
(:class:`~fmlab.experiments.unlearn.UnlearnConfig`), not repeated here.
"""

from __future__ import annotations

import argparse

from fmlab.cli.common import (
    add_data_root,
    add_db,
    add_generator,
    arch_kwargs,
    no_empty_dir_on_error,
    resolve_db,
)

# flag (argparse dest) -> config key; a flag left out keeps the config file's value
FLAG_KEYS = {
    "discriminator": "discriminator", "arch": "arch", "classifier": "classifier",
    "classifier_weights": "classifier_weights", "negatives": "negatives",
    "positives": "positives", "repulsion": "repulsion", "gamma": "gamma",
    "ewc_lambda": "ewc_lambda", "adapted_models": "adapted_models",
    "adapt_steps": "adapt.steps", "unlearn_steps": "unlearn.steps", "lr_g": "unlearn.lr_g",
    "lr_d": "unlearn.lr_d", "n_eval": "n_eval", "reference": "reference", "seed": "seed",
    "data_root": "data_root", "anchor_weight": "guided.anchor_weight",
    "negative_weight": "guided.negative_weight", "select_every": "guided.select_every",
    "guide_data": "guided.guide_data",
}


def add_parser(gan_subparsers) -> None:
    """Add ``fmlab gan unlearn`` to the ``gan`` group's subparsers (imports nothing heavy)."""
    p = gan_subparsers.add_parser(
        "unlearn", help="remove a class from a generator (Adapt-then-Unlearn)",
        description="Split G's samples with a classifier (or take --negatives/--positives), "
                    "adapt a copy to the negatives with EWC, then train G on the positives "
                    "with a repulsion from the adapted weights. Writes OUT/generator.safetensors "
                    "(+ .json), samples_{before,adapted,after}.png and report.json. Settings: "
                    "--config, then the flags given, then --set.",
        argument_default=argparse.SUPPRESS)
    p.add_argument("--config", default=None,
                   help="YAML of unlearning settings, e.g. configs/gan/unlearn_mnist_mlp.yaml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting, e.g. unlearn.steps=200 or gamma=2 (repeatable)")
    add_generator(p, required=True)
    p.add_argument("--discriminator",
                   help="D state dict (same --arch); default: the run directory's checkpoint")
    p.add_argument("--classifier", help="backbone with a classifier head (default lenet5_mnist)")
    p.add_argument("--classifier-weights",
                   help="default: the known file under the data root")
    p.add_argument("--target-class", type=int, required=True, help="class to unlearn")
    p.add_argument("--negatives", help="npz with uint8 'images' to adapt to")
    p.add_argument("--positives", help="npz with uint8 'images' to keep")
    p.add_argument("--repulsion", help="a registered repulsion (fmlab.gan.unlearn.REPULSIONS; "
                                       "an unknown name lists them)")
    p.add_argument("--gamma", type=float,
                   help="repulsion strength on d/d0 (d0 = distance at the start of stage 2)")
    p.add_argument("--ewc-lambda", type=float)
    p.add_argument("--adapted-models", type=int, help="M adapted models (seeds)")
    p.add_argument("--adapt-steps", type=int, help="stage-1 steps (adapt.steps)")
    p.add_argument("--unlearn-steps", type=int, help="stage-2 steps (unlearn.steps)")
    p.add_argument("--lr-g", type=float, help="stage-2 generator learning rate (unlearn.lr_g)")
    p.add_argument("--lr-d", type=float, help="stage-2 discriminator learning rate (unlearn.lr_d)")
    p.add_argument("--guide-data",
                   help="labelled TRAIN images SOURCE:SPLIT for the training-time guide CNN that "
                        "makes every training choice (default mnist:train); 'none' = the "
                        "paper's setup (--classifier splits, no anchor/push/selection)")
    p.add_argument("--anchor-weight", type=float,
                   help="weight of mean ||G(z) - G0(z)||^2 on latents the guide calls positive "
                        "(guided.anchor_weight; 0 = off)")
    p.add_argument("--negative-weight", type=float,
                   help="weight of the push out of the target class, max(0, log p_target(G(z)) "
                        "- log m) with m = guided.push_margin (0.01; m = 0: -log(1 - p_target)), "
                        "by the guide (guided.negative_weight; 0 = off)")
    p.add_argument("--select-every", type=int,
                   help="validate every k stage-2 steps on separate latents and keep the chosen "
                        "step (guided.select_every; 0 = keep the last step)")
    p.add_argument("--n-eval", type=int, help="samples for the metrics")
    p.add_argument("--reference", help="real images SOURCE:SPLIT for FID (default mnist:test)")
    p.add_argument("--seed", type=int)
    p.add_argument("--out", required=True, help="output directory")
    add_data_root(p)
    add_db(p, default_help="OUT/fmlab.db")
    p.set_defaults(func=run, arch_kwargs=None, db=None, no_db=False)


def run(args: argparse.Namespace) -> int:
    from fmlab.experiments.unlearn import run_unlearn
    from fmlab.experiments.unlearn_config import load_unlearn_config

    values = {key: getattr(args, dest) for dest, key in FLAG_KEYS.items()
              if getattr(args, dest, None) is not None}
    values.update(generator=args.generator, target_class=args.target_class, out=args.out)
    if args.arch_kwargs is not None:
        values["arch_kwargs"] = arch_kwargs(args)
    cfg = load_unlearn_config(args.config, args.overrides, values)
    cfg.db = resolve_db(args, args.out)
    with no_empty_dir_on_error(args.out):
        rep = run_unlearn(cfg)
    b, a = rep["metrics"]["before"], rep["metrics"]["after"]
    fp = (f"; FID on positives {b['fid_positives']:.1f} -> {a['fid_positives']:.1f}"
          if b.get("fid_positives") is not None and a.get("fid_positives") is not None else "")
    print(f"class {cfg.target_class} share {b['target_share']:.3f} -> {a['target_share']:.3f}; "
          f"FID {b['fid']:.1f} -> {a['fid']:.1f}{fp} ({cfg.repulsion}, gamma {cfg.gamma})")
    print(f"wrote {args.out}/generator.safetensors, report.json, samples_*.png")
    return 0
