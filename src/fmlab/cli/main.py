"""``fmlab`` entry point. User errors print one line and exit with status 2 (no traceback).

Besides :class:`~fmlab.errors.FmlabError`, an ``OSError`` (a read-only folder, ``--out`` naming an
existing folder, a parent that is a file, a full disk) and a ``UnicodeDecodeError`` (a text input
that is not UTF-8) are user-facing too: they print ``fmlab: error: <path>: <reason>``. Set
``FMLAB_DEBUG=1`` to get the traceback of those instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
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
    "str": "fmlab.cli.str",
    "region": "fmlab.cli.region",
    "dense": "fmlab.cli.dense",
    "video": "fmlab.cli.video",
    "inspect": "fmlab.cli.inspect",
    "text": "fmlab.cli.text",
    "report": "fmlab.cli.report",
    "study": "fmlab.cli.study",
    "graph": "fmlab.cli.graph",
    "attack": "fmlab.cli.attack",
    "diffusion": "fmlab.cli.diffusion",
    "vlgpt": "fmlab.cli.vlgpt",
    "zsl": "fmlab.cli.zsl",
    "translate": "fmlab.cli.translate",
    "retrieval": "fmlab.cli.retrieval",
    "caption": "fmlab.cli.caption",
}
# subcommands kept in a module of their own: group -> modules whose add_parser(group_subparsers)
# attaches them to the subparsers that the group's add_parser returns (no cli module imports
# another; the entry point wires them)
SUBCOMMANDS = {"gan": ("fmlab.cli.gan_unlearn", "fmlab.cli.gan_adapt"), "adapt": ("fmlab.cli.adapt_meta",),
               "finetune": ("fmlab.cli.finetune_pvp",),
               "curate": ("fmlab.cli.curate_filter",),
               "study": ("fmlab.cli.study_text", "fmlab.cli.study_uda")}


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
    """Parse ``argv``, run the command, turn user errors into one line on stderr.

    Args:
        argv: the arguments (default ``sys.argv[1:]``).

    Returns:
        The exit status: 0 success, 2 user error, 130 interrupted.
    """
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
    except (OSError, UnicodeDecodeError, MemoryError) as e:
        if os.environ.get("FMLAB_DEBUG"):
            raise
        print(f"fmlab: error: {describe_error(e)}", file=sys.stderr)
        return 2
    return int(rc or 0)


# atomic_write/atomic_path temporaries: ".<name>.<8 random chars><suffix>" next to the target
_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}(\.[A-Za-z0-9]+)?$")


def _user_path(path: object) -> str:
    """The path as the user knows it: an atomic writer's temporary name becomes its target's."""
    text = os.fsdecode(path) if isinstance(path, (str, bytes, os.PathLike)) else str(path)
    head, _, tail = text.rpartition("/")
    m = _TEMP_NAME.match(tail)
    if m is None:
        return text
    return f"{head}/{m['name']}" if head else m["name"]


def describe_error(e: BaseException) -> str:
    """One line for an OS, decoding or memory error: the path at fault and the reason.

    Args:
        e: the exception.

    Returns:
        ``"<path>: <reason>"`` (or the reason alone when the error names no path).

    Examples:
        >>> describe_error(IsADirectoryError(21, "Is a directory", "out/.f.json.ab12cd34.tmp", "out/f.json"))
        'out/f.json: is a directory (an output file was expected)'
        >>> describe_error(PermissionError(13, "Permission denied", "ro/.f.safetensors.sib7ehvx.safetensors"))
        'ro/f.safetensors: Permission denied'
    """
    if isinstance(e, UnicodeDecodeError):
        return f"input is not UTF-8 text ({e})"
    if isinstance(e, MemoryError):
        return f"out of memory ({e or type(e).__name__}); use a smaller input or batch"
    reason = e.strerror or str(e) or type(e).__name__
    # os.replace(tmp, target): the target (filename2) is what went wrong
    path = e.filename2 if getattr(e, "filename2", None) is not None else e.filename
    if isinstance(e, IsADirectoryError):
        reason = "is a directory (an output file was expected)"
    elif isinstance(e, FileExistsError) and path is not None and os.path.isfile(path):
        reason = "is a file, not a directory"
    elif isinstance(e, NotADirectoryError):
        reason = "a parent of this path is a file, not a directory"
    return f"{_user_path(path)}: {reason}" if path is not None else reason


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
