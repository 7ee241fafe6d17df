"""Options shared by several commands (the only module the command modules import from each other)."""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterator
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


def add_generator(p: argparse.ArgumentParser, required: bool) -> None:
    """``--generator``, ``--arch`` and ``--arch-kwargs`` (gan sample, eval and unlearn).

    Args:
        p: the subcommand's parser.
        required: whether ``--generator`` must be given.
    """
    p.add_argument("--generator", required=required,
                   help="RUN_DIR, generator.safetensors/.json, or a state dict with --arch")
    p.add_argument("--arch", default=None,
                   help="architecture of a bare state dict (e.g. mlp for G--300.ckpt)")
    p.add_argument("--arch-kwargs", default=None, help="JSON object of the architecture's options")


def arch_kwargs(args: argparse.Namespace) -> dict | None:
    """``--arch-kwargs`` parsed as a JSON object (None when absent).

    Args:
        args: the parsed arguments.

    Returns:
        The architecture's keyword arguments, or None.

    Raises:
        ConfigError: not JSON, or not a JSON object.
    """
    import json

    from fmlab.errors import ConfigError

    if args.arch_kwargs is None:
        return None
    try:
        kw = json.loads(args.arch_kwargs)
    except ValueError as e:
        raise ConfigError(f"--arch-kwargs: not JSON ({e})") from None
    if not isinstance(kw, dict):
        raise ConfigError("--arch-kwargs: must be a JSON object")
    return kw


@contextlib.contextmanager
def no_empty_dir_on_error(path: str | Path) -> Iterator[None]:
    """Remove ``path`` again when the command created it and failed before writing into it.

    A workflow makes its output folder early; a user error found after that (a missing
    generator, a bad class) used to leave an empty ``--out`` behind (reliability probe,
    observation e). Folders that existed before, or that hold anything, are left alone.

    Args:
        path: the command's output folder.
    """
    p = Path(path)
    existed = p.exists()
    try:
        yield
    except BaseException:
        if not existed and p.is_dir() and not any(p.iterdir()):
            p.rmdir()
        raise


def add_train_arguments(p: argparse.ArgumentParser, example: str, set_example: str = "trainer.max_steps=50") -> None:
    """``--config``, ``--out``, ``--set`` and ``--resume [RUN_DIR]`` of a config-driven training command.

    ``--resume RUN_DIR`` and ``--out RUN_DIR --resume`` both continue a run in place from its
    ``config.yaml`` (see :func:`train_paths`).
    """
    p.add_argument("--config", default=None, help=f"e.g. {example}")
    p.add_argument("--out", default=None, help="run directory (with --resume: the run to continue)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help=f"override a config key, e.g. {set_example} (repeatable)")
    p.add_argument("--resume", nargs="?", const=True, default=None, metavar="RUN_DIR",
                   help="continue a run from its config.yaml and latest checkpoint (RUN_DIR, or --out)")


def train_paths(args: argparse.Namespace, example: str) -> tuple[Path, Path, bool]:
    """``(config file, run directory, resumed)`` from the arguments of :func:`add_train_arguments`.

    Raises:
        ConfigError: ``--resume`` without a directory, or a flag combination
            :func:`fmlab.engine.resolve_run_dir` refuses.
    """
    from fmlab.engine import resolve_run_dir
    from fmlab.errors import ConfigError

    if args.resume is True and not args.out:
        raise ConfigError("--resume: give the run directory (--resume RUN_DIR or --out RUN_DIR --resume)")
    resume = args.out if args.resume is True else args.resume
    config, out = resolve_run_dir(args.config, args.out, resume or None, example=example)
    return config, out, bool(resume)
