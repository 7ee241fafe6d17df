"""``fmlab results show``."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("results", help="show stored results", description="Show stored results.")
    rsub = p.add_subparsers(dest="results_command", metavar="SUBCOMMAND")
    rsub.required = True
    s = rsub.add_parser("show", help="print rows of a results database",
                        description="Print rows of a results database.")
    s.add_argument("--db", default="fmlab.db")
    s.add_argument("--task", default=None)
    s.add_argument("--run", default=None, help="only this run id")
    s.add_argument("--format", choices=["table", "csv", "json", "md"], default="table")
    s.set_defaults(func=run_show)


def run_show(args: argparse.Namespace) -> int:
    from fmlab.results import ResultsStore, format_rows

    # read-only: a read command never creates or converts the file it is pointed at
    rows = ResultsStore(Path(args.db), readonly=True).query(task=args.task, run_id=args.run)
    print(format_rows(rows, args.format))
    return 0
