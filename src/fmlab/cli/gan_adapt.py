"""``fmlab gan adapt``: GenDA one-shot domain adaptation of a style generator.

Settings come from ``--config`` (e.g. ``configs/gan/genda_mnist.yaml``), then the flags given
explicitly, then ``--set`` overrides; every default is :class:`~fmlab.experiments.genda.
GenDAConfig`'s own, not repeated here.
"""

from __future__ import annotations

import argparse

from fmlab.cli.common import add_data_root, add_generator, arch_kwargs, no_empty_dir_on_error

# flag (argparse dest) -> config key; a flag left out keeps the config file's value
FLAG_KEYS = {
    "discriminator": "discriminator", "arch": "arch", "method": "method", "steps": "stage.steps",
    "seed": "seed", "target_domain": "target_domain", "train_psi": "train_psi",
    "n_eval": "n_eval", "data_root": "data_root",
}


def add_parser(gan_subparsers) -> None:
    """Add ``fmlab gan adapt`` to the ``gan`` group's subparsers (imports nothing heavy)."""
    p = gan_subparsers.add_parser(
        "adapt", help="adapt a style generator to ONE target image (GenDA)",
        description="Freeze a 'style' generator (mapping network) and its discriminator; train "
                    "only GenDA's attribute adaptor w' = a*w + b and a linear attribute head on "
                    "D's backbone from one augmented target image (--method adaptor), or every "
                    "weight (--method full, the baseline). Writes OUT/generator.safetensors "
                    "(+ .json), samples_{source,adapted}.png, target_views.png and report.json "
                    "(likeness, diversity, precision, recall at psi = 1). Settings: --config, "
                    "then the flags given, then --set.",
        argument_default=argparse.SUPPRESS)
    p.add_argument("--config", default=None,
                   help="YAML of GenDA settings, e.g. configs/gan/genda_mnist.yaml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting, e.g. stage.steps=100 or lr_adaptor=0.01 (repeatable)")
    add_generator(p, required=True)
    p.add_argument("--discriminator",
                   help="D state dict (same --arch); default: the run directory's checkpoint")
    p.add_argument("--target", required=True, help="the ONE target image (PNG, JPEG, ...)")
    p.add_argument("--method", choices=("adaptor", "full"),
                   help="adaptor: GenDA (a, b and the D head); full: fine-tune all weights")
    p.add_argument("--steps", type=int, help="training steps (stage.steps)")
    p.add_argument("--seed", type=int)
    p.add_argument("--target-domain", help="none | invert | bold: the map T whose image of the "
                                           "source samples is the recall reference")
    p.add_argument("--train-psi", type=float, help="truncation while training (test: 1)")
    p.add_argument("--n-eval", type=int, help="samples for the metrics")
    p.add_argument("--out", required=True, help="output directory")
    add_data_root(p)
    p.set_defaults(func=run, arch_kwargs=None)


def run(args: argparse.Namespace) -> int:
    from fmlab.experiments.genda import GenDAConfig, run_genda
    from fmlab.experiments.unlearn_config import load_dataclass_config

    values = {key: getattr(args, dest) for dest, key in FLAG_KEYS.items()
              if getattr(args, dest, None) is not None}
    values.update(generator=args.generator, target=args.target, out=args.out)
    if args.arch_kwargs is not None:
        values["arch_kwargs"] = arch_kwargs(args)
    cfg = load_dataclass_config(GenDAConfig, args.config, args.overrides, values)
    with no_empty_dir_on_error(args.out):
        rep = run_genda(cfg)
    s, a = rep["metrics"]["source"], rep["metrics"]["adapted"]
    print(f"{cfg.method}: likeness {s['likeness']:.3f} -> {a['likeness']:.3f}, diversity "
          f"{s['diversity']:.3f} -> {a['diversity']:.3f}, recall {s['recall']:.3f} -> "
          f"{a['recall']:.3f} ({rep['trainable']['g']} G weights trained, "
          f"{rep['cpu_seconds'] / 60:.2f} CPU-min)")
    print(f"wrote {args.out}/generator.safetensors, report.json, samples_*.png")
    return 0
