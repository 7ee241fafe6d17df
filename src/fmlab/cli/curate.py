"""``fmlab curate``: MetaCLIP-style curation of a caption pool against metadata entries."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub) -> argparse._SubParsersAction:
    """Add ``fmlab curate`` (MetaCLIP balancing) and return its subparsers, so other curation
    jobs (``filter``) become ``fmlab curate <job>`` while ``fmlab curate --captions ...`` keeps
    running the balancing."""
    p = sub.add_parser(
        "curate",
        help="balance a caption pool against metadata entries (MetaCLIP)",
        description="Match every caption against the entries (word-boundary substring matching, "
        "Aho-Corasick), count the pairs per entry, keep each pair with probability "
        "1 - prod(1 - t/max(c_e, t)) over its entries, drop pairs matching nothing. Writes "
        "OUT/curated.jsonl (kept records, unchanged), stats.json, entry_counts.csv and "
        "entry_counts.png.",
    )
    p.add_argument(
        "--captions",
        default=None,
        help="caption pool: JSONL (.jsonl/.json/.ndjson[.gz]), CSV (.csv[.gz]) or parquet; or a "
        "folder / quoted glob of such shards, read in sorted order as one pool",
    )
    p.add_argument("--entries", default=None,
                   help="metadata: a text file with one entry per line (required)")
    p.add_argument(
        "--threshold",
        "-t",
        default=None,
        type=float,
        help="t: entries matched by more than t pairs are sampled down to about t (required)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the sampling (default 0)")
    p.add_argument("--out", default=None, help="output directory (required)")
    p.add_argument("--field", default="caption", help="caption field / column (default: caption)")
    p.add_argument(
        "--format",
        default="auto",
        choices=["auto", "jsonl", "csv", "parquet"],
        help="captions file format (default: from the suffix)",
    )
    p.add_argument(
        "--ignore-case",
        action="store_true",
        help="lower-case captions and entries before matching (MetaCLIP is case-sensitive)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=0,
        help="processes matching a JSONL pool in parallel (default 0: automatic); with "
        "--engine ray: Ray actors (default: CPUs, at most 4)",
    )
    p.add_argument(
        "--engine",
        default="local",
        choices=["local", "ray"],
        help="local processes, or a Ray Data pipeline (same output bytes; needs the [dist] extra)",
    )
    p.add_argument(
        "--address",
        default=None,
        help="Ray cluster address for --engine ray (default: start a local cluster for the run)",
    )
    p.set_defaults(func=run, curate_parser=p)
    jobs = p.add_subparsers(dest="curate_command", metavar="[JOB]",
                            title="other jobs (fmlab curate JOB --help)")
    jobs.required = False
    return jobs


def run(args: argparse.Namespace) -> int:
    from fmlab.curate import CurateConfig, curate

    missing = [f for f, v in (("--captions", args.captions), ("--entries", args.entries),
                              ("--threshold/-t", args.threshold), ("--out", args.out)) if v is None]
    if missing:  # argparse's own message and exit status 2, as when they were required=True
        args.curate_parser.error(f"the following arguments are required: {', '.join(missing)}")

    s = curate(
        CurateConfig(
            captions=Path(args.captions),
            entries=Path(args.entries),
            threshold=args.threshold,
            seed=args.seed,
            out=Path(args.out),
            field=args.field,
            format=args.format,
            ignore_case=args.ignore_case,
            workers=args.workers,
            engine=args.engine,
            address=args.address,
        )
    )
    print(
        f"pairs: {s['pairs_total']:,} read, {s['pairs_matched']:,} matched, "
        f"{s['pairs_kept']:,} kept ({100 * s['kept_fraction']:.1f}%)"
    )
    print(
        f"entries: {s['entries']:,} ({s['entries_matched']:,} matched; "
        f"head >= t: {s['head_entries']:,}, tail: {s['tail_entries']:,}); "
        f"matches {s['matches_before']:,} -> {s['matches_after']:,}"
    )
    sec = s["seconds"]
    print(f"time: {sec['total_wall']:.1f} s wall, {sec['cpu_main_process']:.1f} s CPU (main proc)")
    print(f"wrote {args.out}/curated.jsonl, stats.json, entry_counts.csv, entry_counts.png")
    return 0
