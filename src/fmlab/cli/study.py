"""``fmlab study``: simulation studies of a paper's claim (one subcommand per study)."""

from __future__ import annotations

import argparse

from fmlab.cli.common import add_db, resolve_db


def add_parser(subparsers):
    """Add the ``study`` group and its subcommands; returns the group's subparsers (imports nothing heavy)."""
    group = subparsers.add_parser("study", help="simulation studies of papers' claims",
                                  description="Simulation studies that check a paper's claim in seconds.")
    sub = group.add_subparsers(dest="study", metavar="STUDY")
    sub.required = True
    p = sub.add_parser(
        "pretrain-advantage", help="the provable advantage of unsupervised pre-training (GMM, factor model)",
        description="Pre-train (EM / PCA on m unlabelled points) + ERM on n labelled points vs "
                    "supervised-only baselines over an (m, n) grid, several seeds and label-"
                    "informativeness knobs; writes results.json, summary.md, "
                    "advantage_heatmap.png and rate_fit.png into --out.")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--config", default=None,
                   help="YAML of settings (default: the built-in defaults of "
                        "configs/study/pretrain_advantage.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting, e.g. grid.m=[50,500] or grid.seeds=3 (repeatable)")
    add_db(p, default_help="OUT/fmlab.db")
    p.set_defaults(func=run_pretrain_advantage)
    return sub


def run_pretrain_advantage(args: argparse.Namespace) -> int:
    from fmlab.experiments.pretrain_advantage import load_advantage_config, run_study

    cfg = load_advantage_config(args.config, args.overrides)
    info = run_study(cfg, args.out, db=resolve_db(args, args.out))
    print(f"{info['records']} records in {info['seconds']:.1f} s; wrote {args.out}/results.json, "
          "summary.md, advantage_heatmap.png, rate_fit.png")
    for key, fit in info["rate_fits"].items():
        if "loglog_slope_m" in fit:
            print(f"  {key}: excess-error slopes m {fit['loglog_slope_m']:+.2f}, "
                  f"n {fit['loglog_slope_n']:+.2f}")
    return 0
