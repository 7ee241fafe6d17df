"""``fmlab adapt``: few-shot adaptation methods × shots × seeds on cached features, and
``fmlab adapt spectrum``: the singular-value spectrum (SVE, LSVR) of a feature file.

``spectrum`` is an optional subcommand: ``fmlab adapt --data ... --out ...`` works as before
(``--data``/``--out`` are checked in :func:`run`, since argparse would otherwise demand them of
the subcommand too).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fmlab.cli.common import add_backbone, add_data_root, add_db, resolve_db
from fmlab.utils.helptext import deferred_help


def _help_fields() -> dict[str, str]:
    from fmlab.adapt.registry import help_fields

    return help_fields()


def add_parser(sub) -> argparse._SubParsersAction:
    """Add ``fmlab adapt`` (the sweep) and return its subparsers, so further jobs on the same
    methods (``meta-train``) become ``fmlab adapt <job>`` while ``fmlab adapt --data ...`` keeps
    running the sweep."""
    p = sub.add_parser(
        "adapt", help="compare few-shot adaptation methods on frozen features",
        description="Sweep adaptation methods x shots x seeds on cached features with leak-free "
                    "split files (train/val from the train split, test untouched). Writes "
                    "results.json, summary.md, accuracy_vs_shots.png and results-store rows. "
                    "Methods: {methods} ({requires}).",
        formatter_class=deferred_help(_help_fields),
    )
    add_backbone(p, required=False)
    p.add_argument("--clip-model", default=None,
                   help="instead of --backbone: an image-text model (open_clip:<arch>[:<tag>] or a "
                        "`fmlab clip train` folder); its image embeddings are the features, its "
                        "text tower gives zero-shot weights, and methods needing the model become available")
    p.add_argument("--data", default=None, help="labelled image source (required)")
    p.add_argument("--methods", default=None,
                   help="comma list of methods: {methods} (default {default_methods})")
    p.add_argument("--shots", default="1,2,4,8,16,all",
                   help="comma list of shots per class; 'all' = the full train split (default 1,2,4,8,16,all)")
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--text-encoder", default=None, help="for zero-shot: open_clip:<arch>[:<tag>] or text:minilm")
    p.add_argument("--templates", default=None, help="JSON list of prompt templates with {}")
    p.add_argument("--views", type=int, default=0,
                   help="augmented views of each training image (default 0), given to the methods "
                        "that use them: {view_methods}")
    p.add_argument("--meta", default=None,
                   help="a `fmlab adapt meta-train` folder, for the methods that need one (gram)")
    p.add_argument("--test-split", default=None, help="evaluation split (default: test)")
    p.add_argument("--base-to-new", action="store_true",
                   help="fit on the first half of the classes (base) only; report accuracy on the "
                        "base and on the unseen (new) classes and their harmonic mean")
    p.add_argument("--transfer-to", default=None, metavar="SOURCE",
                   help="cross-dataset: also score each fitted method on SOURCE's test split among "
                        "SOURCE's classes")
    p.add_argument("--out", default=None, help="output directory (required)")
    add_data_root(p)
    add_db(p, default_help="OUT/fmlab.db")
    p.set_defaults(func=run, adapt_parser=p)
    jobs = p.add_subparsers(dest="adapt_command", metavar="[JOB]",
                            title="other jobs (fmlab adapt JOB --help)")
    jobs.required = False
    _add_spectrum(jobs)
    return jobs


def _add_spectrum(asub) -> None:
    s = asub.add_parser(
        "spectrum", help="singular value entropy (SVE) and LSVR of a feature file",
        description="Rows L2-normalised, columns centred, then SVE = -sum p log p and "
                    "LSVR = -log p_1 with p = sigma / sum(sigma) (NMTune's spectrum analysis).")
    s.add_argument("--features", required=True,
                   help="`fmlab features extract` output, .npy or .safetensors file")
    s.add_argument("--center", default="column", choices=["column", "row", "none"],
                   help="column (default), row (the official NMTune code's per-sample mean) or none")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(func=run_spectrum)


def run_spectrum(args: argparse.Namespace) -> int:
    import json

    from fmlab.errors import DataError
    from fmlab.metrics.spectrum import load_feature_matrix, spectrum_metrics

    X = load_feature_matrix(args.features)
    try:
        m = spectrum_metrics(X, center=args.center)
    except DataError as e:
        raise DataError(f"{args.features}: {e}") from None
    m["features"] = str(args.features)
    if args.json:
        print(json.dumps(m))
    else:
        print(f"{args.features}: SVE {m['sve']:.4f}  LSVR {m['lsvr']:.4f}  "
              f"(top share {m['top_share']:.4f}, N={m['n']}, D={m['d']}, center={m['center']})")
    return 0


def run(args: argparse.Namespace) -> int:
    from fmlab.experiments.adapt import AdaptConfig, run_adapt
    from fmlab.utils.parsing import parse_ints, parse_shots

    missing = [f for f, v in (("--data", args.data), ("--out", args.out)) if v is None]
    if missing:  # argparse's own message and exit status 2, as when they were required=True
        args.adapt_parser.error(f"the following arguments are required: {', '.join(missing)}")
    cfg = AdaptConfig(
        backbone=args.backbone, weights=args.weights, data=args.data, out=Path(args.out),
        methods=[m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None,
        shots=parse_shots(args.shots), seeds=parse_ints(args.seeds, "--seeds"),
        text_encoder=args.text_encoder, templates=args.templates, views=args.views,
        test_split=args.test_split, data_root=args.data_root, db=resolve_db(args, args.out),
        clip_model=args.clip_model, init_seed=args.seed, meta=args.meta,
        base_to_new=args.base_to_new, transfer_to=args.transfer_to,
    )
    run_adapt(cfg)
    print((Path(args.out) / "summary.md").read_text())
    print(f"wrote {args.out}/results.json, summary.md, accuracy_vs_shots.png")
    return 0
