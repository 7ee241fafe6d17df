"""Lazy package exports: names import their module on first use, so ``import fmlab.x`` stays cheap.

Packages whose modules pull in heavy dependencies (torch, open_clip, transformers) list their
public names with the module defining each; :func:`lazy_exports` returns the module-level
``__getattr__`` and ``__dir__`` (PEP 562) that resolve them on first access and cache them in
the package's namespace.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str],
                 namespace: dict[str, Any]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of a package exporting ``exports`` lazily.

    Args:
        package: the package's dotted name (``__name__``).
        exports: public name -> submodule (relative to ``package``) that defines it.
        namespace: the package's ``globals()``; a resolved name is stored there, so the next
            access skips ``__getattr__``.

    Returns:
        ``(__getattr__, __dir__)`` to assign at module level.

    Examples:
        >>> ns = {}
        >>> getattr_, dir_ = lazy_exports("fmlab.utils", {"jsonable": "io"}, ns)
        >>> getattr_("jsonable").__name__, "jsonable" in ns, dir_()
        ('jsonable', True, ['jsonable'])
        >>> getattr_("nope")
        Traceback (most recent call last):
        ...
        AttributeError: module 'fmlab.utils' has no attribute 'nope'
    """
    names = list(exports)

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return list(names)

    return __getattr__, __dir__
