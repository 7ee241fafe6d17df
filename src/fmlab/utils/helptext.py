"""``--help`` texts filled in from registries only when help is printed.

The CLI builds every sub-parser on each call; importing the method registries there would cost
every command (``fmlab --version`` included) the import of torch and scikit-learn. A formatter
made by :func:`deferred_help` fills ``{name}`` placeholders in descriptions and option helps when
argparse formats them, so the registry is read only for ``--help``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping


def deferred_help(fields: Callable[[], Mapping[str, str]]) -> type[argparse.HelpFormatter]:
    """A help formatter class that replaces ``{key}`` in help texts with ``fields()[key]``.

    Args:
        fields: called once, when help is first formatted; returns the placeholder values.

    Returns:
        An :class:`argparse.HelpFormatter` subclass for ``formatter_class``.

    Examples:
        >>> p = argparse.ArgumentParser(prog="x", formatter_class=deferred_help(lambda: {"m": "a, b"}))
        >>> _ = p.add_argument("--methods", help="one of: {m}")
        >>> "one of: a, b" in p.format_help()
        True
    """
    cache: dict[str, Mapping[str, str]] = {}

    def fill(text: str) -> str:
        if "{" not in text:
            return text
        if "v" not in cache:
            cache["v"] = fields()
        for key, value in cache["v"].items():
            text = text.replace("{" + key + "}", value)
        return text

    class DeferredHelpFormatter(argparse.HelpFormatter):
        def _get_help_string(self, action: argparse.Action) -> str | None:
            text = super()._get_help_string(action)
            return fill(text) if text else text

        def _format_text(self, text: str) -> str:
            return super()._format_text(fill(text))

    return DeferredHelpFormatter
