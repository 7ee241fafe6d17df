"""``fmlab`` entry point. User errors print one line and exit with status 2 (no traceback)."""

from __future__ import annotations

import argparse
import importlib
import sys

# command name -> module in fmlab.cli providing add_parser(subparsers) and run(args)
COMMANDS = {
    "demo": "fmlab.cli.demo",
    "data": "fmlab.cli.data",
    "features": "fmlab.cli.features",
    "eval": "fmlab.cli.eval",
    "adapt": "fmlab.cli.adapt",
    "results": "fmlab.cli.results",
    "gan": "fmlab.cli.gan",
    "pretrain": "fmlab.cli.pretrain",
    "clip": "fmlab.cli.clip",
    "curate": "fmlab.cli.curate",
    "finetune": "fmlab.cli.finetune",
}
# subcommands kept in a module of their own: group -> modules whose add_parser(group_subparsers)
# attaches them to the subparsers that the group's add_parser returns (no cli module imports
# another; the entry point wires them)
SUBCOMMANDS = {"gan": ("fmlab.cli.gan_unlearn",)}


def build_parser() -> argparse.ArgumentParser:
    from fmlab import __version__

    parser = argparse.ArgumentParser(
        prog="fmlab",
        description="Pre-train, adapt, evaluate and compare foundation-model methods, offline.",
    )
    parser.add_argument("--version", action="version", version=f"fmlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, module in COMMANDS.items():
        group = importlib.import_module(module).add_parser(sub)
        for extra in SUBCOMMANDS.get(name, ()):
            importlib.import_module(extra).add_parser(group)
    return parser


def main(argv: list[str] | None = None) -> int:
    from fmlab.errors import FmlabError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        rc = args.func(args)
    except FmlabError as e:
        print(f"fmlab: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fmlab: interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
