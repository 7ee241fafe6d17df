"""Options shared by several commands."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def add_data_root(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", default=None,
                   help="folder of named datasets (default: $FMLAB_DATA, else ~/.cache/fmlab/data)")


def add_backbone(p: argparse.ArgumentParser, required: bool = True,
                 seed_help: str = "seed of the backbone's random init when no --weights are given "
                                  "(default 0; recorded with the result)") -> None:
    """Add ``--backbone``, ``--weights`` and ``--seed`` (``args.seed``, default 0).

    Without ``--weights`` a backbone is a random initialisation; ``--seed`` makes two commands
    build the same network (``create_backbone(name, weights, seed=args.seed)``).

    Args:
        p: the subcommand's parser.
        required: whether ``--backbone`` is required.
        seed_help: the ``--seed`` help text (a command that also seeds something else says so).
    """
    p.add_argument("--backbone", required=required,
                   help="registry name: resnet20_cifar, lenet5_mnist, timm:<model>, open_clip:<arch>[:<tag>]")
    p.add_argument("--weights", default=None, help="local weights file (safetensors or torch state dict)")
    p.add_argument("--seed", type=int, default=0, help=seed_help)


def add_db(p: argparse.ArgumentParser, default_help: str = "./fmlab.db") -> None:
    """Add ``--db PATH`` and ``--no-db`` (read back with :func:`resolve_db`)."""
    p.add_argument("--db", default=None,
                   help=f"results database (SQLite); default {default_help} or $FMLAB_DB")
    p.add_argument("--no-db", action="store_true", help="do not record results")


def resolve_db(args: argparse.Namespace, run_dir: str | Path | None = None) -> Path | None:
    """The results database to write: None with ``--no-db``, else ``--db``, else
    ``RUN_DIR/fmlab.db`` when the command has a run folder, else ``$FMLAB_DB`` or ``./fmlab.db``."""
    if getattr(args, "no_db", False):
        return None
    if args.db:
        return Path(args.db)
    if run_dir is not None:
        return Path(run_dir) / "fmlab.db"
    return Path(os.environ.get("FMLAB_DB", "fmlab.db"))
