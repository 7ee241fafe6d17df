"""``fmlab report``: write the offline HTML dashboard of results stores and run folders."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser(
        "report", help="write an offline HTML report of results stores and run folders",
        description="Write a static site (DIR/index.html) that opens offline: every task's "
                    "comparison table (mean ± std over seeds), plots, training curves and a "
                    "run-to-run comparison.")
    p.add_argument("--db", action="append", default=[], metavar="DB",
                   help="a SQLite results store (repeatable)")
    p.add_argument("--runs", action="append", default=[], metavar="DIR",
                   help="a folder scanned for results.json files and run folders with metrics.jsonl "
                        "(repeatable)")
    p.add_argument("--out", required=True, metavar="DIR", help="the report folder")
    p.add_argument("--no-png", action="store_true", help="skip the PNG fallback of each chart")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fmlab.report import build_report

    index = build_report(args.out, dbs=args.db, runs=args.runs, png=not args.no_png)
    print(f"report: {index}")
    return 0
