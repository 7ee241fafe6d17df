"""``fmlab inspect attention-nmi``: look inside a trained encoder."""

from __future__ import annotations

import argparse
from pathlib import Path

from fmlab.cli.common import add_data_root


def add_parser(sub) -> None:
    p = sub.add_parser("inspect", help="look inside a trained encoder (attention NMI per layer)",
                       description="Diagnostics of trained encoders.")
    s = p.add_subparsers(dest="inspect_command", metavar="SUBCOMMAND")
    s.required = True
    a = s.add_parser("attention-nmi", help="per-layer NMI of a ViT's attention maps (UNIP)",
                     description="Normalised mutual information of each layer's attention maps "
                                 "(1: local, each query attends to itself; 0: global, every query "
                                 "attends alike). Writes OUT/attention_nmi.json and .png.")
    a.add_argument("--encoder", required=True,
                   help="an fmlab pretrain run folder (encoder.json), or a ViT registry name")
    a.add_argument("--data", default="cifar10", help="image source (default cifar10)")
    a.add_argument("--split", default="test")
    a.add_argument("--n", type=int, default=64, help="images to average over (default 64)")
    a.add_argument("--out", required=True, help="output folder")
    add_data_root(a)
    a.set_defaults(func=run_attention_nmi)


def run_attention_nmi(args: argparse.Namespace) -> int:
    from fmlab.experiments.attention_nmi import write_layer_nmi
    from fmlab.utils.validation import positive_int

    positive_int("--n", args.n)
    table = write_layer_nmi(args.encoder, args.data, args.split, args.n, Path(args.out), args.data_root)
    print(f"{'layer':>5}  {'NMI mean':>8}  {'head std':>8}")
    for row in table["layers"]:
        print(f"{row['layer'] + 1:>5}  {row['nmi_mean']:8.3f}  {row['nmi_head_std']:8.3f}")
    print(f"wrote {Path(args.out) / 'attention_nmi.json'} and attention_nmi.png")
    return 0
