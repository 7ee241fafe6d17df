"""``fmlab attack``: universal adversarial perturbations against frozen encoders (AdvEncoder).

``fmlab attack universal`` trains the generator (``configs/attack/advencoder.yaml``, explicit
flags, then ``--set``); ``fmlab attack eval`` scores downstream probes on clean, δ-perturbed and
random-noise test images.
"""

from __future__ import annotations

import argparse
import json

EXAMPLE = "configs/attack/advencoder.yaml"


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``fmlab attack`` with its ``universal`` and ``eval`` subcommands."""
    from fmlab.cli.common import add_data_root, add_db, add_train_arguments

    p = subparsers.add_parser("attack", help="universal adversarial perturbations (AdvEncoder)")
    sub = p.add_subparsers(dest="attack_command", metavar="SUBCOMMAND")
    sub.required = True

    u = sub.add_parser("universal", help="train a downstream-agnostic universal perturbation",
                       description="Train G (fixed noise -> δ = ε·tanh(G(z)) or a patch) against a "
                                   "frozen backbone on surrogate images; writes OUT/delta."
                                   "safetensors (+ .json, .png). Settings: --config, then the "
                                   "flags given, then --set.")
    add_train_arguments(u, EXAMPLE, "trainer.max_steps=50")
    u.add_argument("--backbone", help="registry name (model.backbone), e.g. resnet20_cifar")
    u.add_argument("--weights", help="the backbone's weights file (model.weights)")
    u.add_argument("--surrogate", help="surrogate image source (data.source), e.g. cifar10")
    kind = u.add_mutually_exclusive_group()
    kind.add_argument("--eps", help="ℓ∞ bound in pixel scale: 10/255 or a number in (0, 1]")
    kind.add_argument("--patch", type=float, help="patch variant: area fraction, e.g. 0.03")
    u.set_defaults(func=run_universal)

    e = sub.add_parser("eval", help="accuracy drop of downstream probes under a perturbation",
                       description="Fit linear probes / kNN on clean features (fmlab adapt "
                                   "protocol), score them on the test split clean, with δ and "
                                   "with random noise of the same ℓ∞ norm.")
    e.add_argument("--perturbation", required=True, help="DIR/delta.safetensors")
    e.add_argument("--backbone", required=True, help="registry name")
    e.add_argument("--weights", default=None, help="the backbone's weights file")
    e.add_argument("--data", required=True, nargs="+", help="downstream source(s), e.g. cifar10 mnist")
    e.add_argument("--methods", nargs="+", default=["linear", "knn"])
    e.add_argument("--shots", nargs="+", default=["16"], help="shots per class (or 'all')")
    e.add_argument("--seeds", nargs="+", type=int, default=[1], help="split seeds")
    e.add_argument("--test-limit", type=int, default=2000, help="test images (0: all)")
    e.add_argument("--noise-seed", type=int, default=0)
    e.add_argument("--out", required=True, help="output folder")
    add_data_root(e)
    add_db(e, default_help="OUT/fmlab.db")
    e.set_defaults(func=run_eval)
    return sub


def run_universal(args: argparse.Namespace) -> int:
    from pathlib import Path

    from fmlab.attack.advencoder import parse_eps
    from fmlab.cli.common import train_paths
    from fmlab.errors import ConfigError
    from fmlab.experiments.attack import load_attack_config, run_universal as train

    if args.eps is not None:
        parse_eps(args.eps, "--eps")
    if args.patch is not None and not 0.0 < args.patch < 1.0:
        raise ConfigError(f"--patch: {args.patch!r} must be an area fraction in (0, 1)")
    if args.config or args.resume:
        config, out, resumed = train_paths(args, EXAMPLE)
    elif not args.out:
        raise ConfigError("give --out DIR (and --config FILE, default: the built-in "
                          f"defaults, the same as {EXAMPLE})")
    else:  # no --config: the dataclass defaults, the same values as the shipped YAML
        config, out, resumed = None, Path(args.out), False
    flags = {"model.backbone": args.backbone, "model.weights": args.weights,
             "data.source": args.surrogate, "attack.eps": args.eps,
             "attack.patch": args.patch}
    given = [f"{k}={v}" for k, v in flags.items() if v is not None]
    if given and resumed:
        raise ConfigError("--resume continues the saved config; change keys with --set only")
    cfg = load_attack_config(config, given + list(args.overrides))
    info = train(cfg, out, resume=resumed)
    print(json.dumps({"out": str(out), **{k: info[k] for k in ("kind", "eps", "patch", "linf",
                                                               "step", "sha256")}}))
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from pathlib import Path

    from fmlab.cli.common import resolve_db
    from fmlab.experiments.attack_eval import AttackEvalConfig, run_attack_eval

    shots = [s if s == "all" else int(s) for s in args.shots]
    cfg = AttackEvalConfig(Path(args.perturbation), args.backbone, list(args.data),
                           Path(args.out), weights=args.weights, methods=list(args.methods),
                           shots=shots, seeds=list(args.seeds), test_limit=args.test_limit,
                           noise_seed=args.noise_seed, data_root=args.data_root,
                           db=resolve_db(args, args.out))
    records = run_attack_eval(cfg)
    print(Path(args.out) / "summary.md")
    from fmlab.experiments.attack_eval import summarize_attack

    print(summarize_attack(records))
    return 0
