"""Module name patterns: which layers a PEFT method touches.

A pattern selects modules by their dotted name in ``model.named_modules()`` (``"blocks.0.attn.qkv"``,
``"layer1.0.conv1"``; the root module is ``""``):

- a plain pattern is matched with :func:`fnmatch.fnmatchcase` against the *whole* name. ``*`` matches
  any run of characters, dots included, so ``"*qkv"`` matches every ``...attn.qkv`` and
  ``"layer1.*"`` matches everything under ``layer1``; ``?`` and ``[abc]`` work as in the shell;
- a pattern that starts with ``re:`` is a Python regular expression matched with
  :func:`re.fullmatch` (``"re:blocks\\.(0|1)\\.mlp\\.fc\\d"``).

Patterns are case-sensitive. A pattern that matches no module at all is a mistake and raises
:class:`~fmlab.errors.ConfigError` naming it; so does one whose matches are all of a type the method
cannot adapt (the method filters the matches by type, so ``"blocks.*"`` picks the Linear layers).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Sequence

from torch import nn

from fmlab.errors import ConfigError

REGEX_PREFIX = "re:"


def as_pattern_list(patterns: str | Sequence[str] | None, what: str = "targets") -> list[str]:
    """Normalise ``None`` / one string / a sequence of strings to a list of strings."""
    if patterns is None:
        return []
    if isinstance(patterns, str):
        return [patterns]
    out = list(patterns)
    for p in out:
        if not isinstance(p, str):
            raise ConfigError(f"{what}: patterns must be strings, got {p!r}")
    return out


def _matcher(pattern: str) -> Callable[[str], bool]:
    if pattern.startswith(REGEX_PREFIX):
        try:
            rx = re.compile(pattern[len(REGEX_PREFIX):])
        except re.error as e:
            raise ConfigError(f"invalid regular expression in pattern {pattern!r}: {e}") from None
        return lambda name: rx.fullmatch(name) is not None
    return lambda name: fnmatch.fnmatchcase(name, pattern)


def match_names(names: Iterable[str], pattern: str) -> list[str]:
    """The names (in their given order) that ``pattern`` selects."""
    m = _matcher(pattern)
    return [n for n in names if m(n)]


def select_modules(
    model: nn.Module,
    patterns: str | Sequence[str],
    accept: Callable[[str, nn.Module], bool] | None = None,
    kind: str = "module",
    what: str = "targets",
) -> list[str]:
    """Resolve patterns to module names, in ``named_modules()`` order (whatever the pattern order),
    without duplicates.

    ``accept(name, module)`` filters the matches (a method keeps the layer types it supports). Every
    pattern must match at least one module and keep at least one after filtering, else
    :class:`ConfigError` names the pattern.
    """
    modules = dict(model.named_modules())
    chosen: dict[str, None] = {}
    for pattern in as_pattern_list(patterns, what):
        hits = match_names(modules, pattern)
        if not hits:
            raise ConfigError(
                f"{what} pattern {pattern!r} matches no module of {type(model).__name__} "
                f"(names look like {_examples(modules)})"
            )
        kept = [n for n in hits if accept is None or accept(n, modules[n])]
        if not kept:
            types = sorted({type(modules[n]).__name__ for n in hits})
            raise ConfigError(
                f"{what} pattern {pattern!r} matches {len(hits)} module(s) but none is a {kind} "
                f"(matched types: {', '.join(types)})"
            )
        for n in kept:
            chosen[n] = None
    order = {n: i for i, n in enumerate(modules)}
    return sorted(chosen, key=order.__getitem__)


def _examples(modules: dict[str, nn.Module], k: int = 4) -> str:
    names = [n for n in modules if n][:k]
    return ", ".join(repr(n) for n in names) + (", ..." if len(modules) > k + 1 else "")


def is_within(name: str, roots: Iterable[str]) -> bool:
    """True if module ``name`` is one of ``roots`` or lies below one of them."""
    for r in roots:
        if r == "" or name == r or name.startswith(r + "."):
            return True
    return False


def get_module(model: nn.Module, name: str) -> nn.Module:
    """``model.get_submodule`` with an error that names the module."""
    try:
        return model.get_submodule(name)
    except AttributeError:
        raise ConfigError(f"module {name!r} not found in {type(model).__name__}") from None


def set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """Replace the submodule called ``name`` by ``new``."""
    if not name:
        raise ConfigError("cannot replace the root module itself; wrap it in a parent module")
    parent_name, _, child = name.rpartition(".")
    parent = get_module(model, parent_name) if parent_name else model
    setattr(parent, child, new)
