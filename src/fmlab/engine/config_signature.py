"""Config sections generated from a constructor's signature (re-exported by ``engine.config``).

Why: a method's hyperparameters are already written once, typed and with defaults, in its
constructor. A config section built from that signature gives YAML keys, typed ``--set``
conversion and "did you mean" errors for every option without a second, hand-kept list that
drifts from the code (``fmlab pretrain``'s ``objective`` and ``augment`` sections).
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import re
import typing
from collections.abc import Callable, Iterable
from typing import Any

from fmlab.errors import ConfigError

__all__ = ["config_section_from_signature", "expand_path", "signature_params"]


def signature_params(fn: Callable[..., Any], cls: type | None = None
                     ) -> list[tuple[inspect.Parameter, Any]]:
    """The named parameters of ``fn`` with their resolved type hints.

    Args:
        fn: a function or constructor.
        cls: the class ``fn`` belongs to; when ``fn`` takes ``**kwargs`` and passes them on
            (SupCon -> SimCLR), the nearest parent's constructor parameters are added.

    Returns:
        ``(parameter, type hint or None)`` pairs, in signature order.

    Examples:
        >>> def f(a: int, b: float = 1.0, *args, c: str = "x", **kw): ...
        >>> [(p.name, h) for p, h in signature_params(f)]
        [('a', <class 'int'>), ('b', <class 'float'>), ('c', <class 'str'>)]
    """
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # an annotation that does not resolve: its parameter has no hint
        hints = {}
    params = list(inspect.signature(fn).parameters.values())
    out = [(p, hints.get(p.name)) for p in params
           if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if cls is not None and any(p.kind is p.VAR_KEYWORD for p in params):
        parent = next((b for b in cls.__mro__[1:] if "__init__" in b.__dict__), None)
        if parent is not None and parent is not object:
            have = {p.name for p, _ in out}
            out += [(p, h) for p, h in signature_params(parent.__dict__["__init__"], parent)
                    if p.name not in have]
    return out


def config_section_from_signature(name: str, fn: Callable[..., Any], *, skip: Iterable[str] = (),
                                  base: type = object, cls: type | None = None,
                                  extra: Iterable[tuple[str, Any, Any]] = ()) -> type:
    """A dataclass whose fields are ``fn``'s typed keyword parameters with defaults.

    Parameters without a type hint or without a default are left out (the run fills them, or
    the call will say they are missing), as are those in ``skip``.

    Args:
        name: the dataclass's name.
        fn: the constructor (or factory) whose signature defines the fields.
        skip: parameter names that are never config keys (filled in by the caller).
        base: a dataclass to subclass (its fields come first).
        cls: the class owning ``fn`` (see :func:`signature_params`; also names the docstring).
        extra: additional ``(field name, type, default)`` fields that are not parameters.

    Returns:
        The new dataclass; ``fmlab.engine.config.load_config`` reads it like any section.

    Examples:
        >>> class Barlow:
        ...     def __init__(self, encoder, proj_dim: int = 128, lambd: float = 5e-3): ...
        >>> Section = config_section_from_signature("BarlowSection", Barlow.__init__, cls=Barlow)
        >>> Section()
        BarlowSection(proj_dim=128, lambd=0.005)
        >>> Section.__doc__
        'Options of Barlow.'
    """
    skip = set(skip)
    fields: list[tuple[str, Any, Any]] = []
    for p, hint in signature_params(fn, cls):
        if p.name in skip or p.name == "self" or hint is None or p.default is inspect.Parameter.empty:
            continue
        fields.append((p.name, hint, dataclasses.field(default=p.default)))
    fields += [(n, tp, dataclasses.field(default=default)) for n, tp, default in extra]
    owner = cls.__name__ if cls is not None else fn.__qualname__
    bases = (base,) if base is not object else ()
    return dataclasses.make_dataclass(name, fields, bases=bases,
                                      namespace={"__doc__": f"Options of {owner}."})


def expand_path(value: str | None, key: str) -> str | None:
    """``${VAR}`` and ``~`` expansion of a config path; an unset variable names the key.

    Args:
        value: the configured path, or None.
        key: the dotted config key (for the error).

    Returns:
        The expanded path (None stays None).

    Examples:
        >>> expand_path("~/w.pt", "model.weights") == os.path.expanduser("~/w.pt")
        True
        >>> expand_path("${FMLAB_DOCTEST_UNSET}/w.pt", "model.weights")
        Traceback (most recent call last):
        ...
        fmlab.errors.ConfigError: model.weights: '${FMLAB_DOCTEST_UNSET}/w.pt' uses $FMLAB_DOCTEST_UNSET, which is not set (export FMLAB_DOCTEST_UNSET=... or give a full path)
    """
    if value is None:
        return None
    out = os.path.expanduser(os.path.expandvars(value))
    missing = re.findall(r"\$\{?(\w+)\}?", out)
    if missing:
        raise ConfigError(f"{key}: {value!r} uses ${missing[0]}, which is not set "
                          f"(export {missing[0]}=... or give a full path)")
    return out
