"""The registry of synthetic kinds: each generator registers itself at its definition.

A generator module in ``fmlab.data.synthetic`` decorates its ``render_<kind>`` function with
:func:`register_synthetic`; :func:`synthetic_kinds` imports every module of the package once, so a
new kind needs no edit anywhere else: ``fmlab data list`` shows it and ``open_source("<kind>?...")``
opens it.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fmlab.errors import ConfigError


@dataclass(frozen=True)
class SyntheticKind:
    """One registered generator.

    Attributes:
        name: the spec's kind (``canvas``).
        render: ``render(pool_images, pool_labels, indices, seed, **params) -> dict`` (images
            uint8 first axis B, optional ``captions`` list, ``label``/``labels`` arrays).
        params: its own parameters and their defaults (the default's type is the value's type).
        description: one line for ``fmlab data list``.
        layout: optional cheap ``layout(pool_labels, indices, seed, **params) -> dict`` with
            ``label`` (B,) or ``labels`` (B, K), so a split knows its labels without rendering.
        captions: optional ``captions(layout, class_names) -> list[str]`` over a layout.
    """

    name: str
    render: Callable[..., dict]
    params: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    layout: Callable[..., dict] | None = None
    captions: Callable[..., list[str]] | None = None


SYNTHETIC: dict[str, SyntheticKind] = {}


def register_synthetic(name: str, *, params: dict[str, Any] | None = None, description: str = "",
                       layout: Callable[..., dict] | None = None,
                       captions: Callable[..., list[str]] | None = None) -> Callable:
    """Decorator registering ``render_<name>`` as the synthetic source kind ``name``.

    Args:
        name: the kind used in specs (``name?key=value&...``).
        params: the generator's own parameters with defaults (``objects``, ``n_train``,
            ``n_test`` and ``seed`` are common to every kind and must not be repeated).
        description: one line for ``fmlab data list``.
        layout: optional fast label/caption path (see :class:`SyntheticKind`).
        captions: optional captions over a layout.

    Returns:
        The decorator; it returns the function unchanged.

    Examples:
        >>> import numpy as np
        >>> @register_synthetic("_doc_demo", params={"size": 8}, description="demo")
        ... def render_demo(pool_images, pool_labels, indices, seed, size=8):
        ...     return {"images": np.zeros((len(indices), size, size), np.uint8)}
        >>> SYNTHETIC.pop("_doc_demo").params
        {'size': 8}
    """
    from fmlab.data.synthetic.source import COMMON_PARAMS

    def deco(fn: Callable[..., dict]) -> Callable[..., dict]:
        clash = sorted(set(params or {}) & set(COMMON_PARAMS))
        if clash:
            raise ConfigError(f"synthetic kind {name!r}: parameters {clash} are common to every kind")
        SYNTHETIC[name] = SyntheticKind(name, fn, dict(params or {}), description, layout, captions)
        return fn

    return deco


_loaded = False


def synthetic_kinds() -> dict[str, SyntheticKind]:
    """Every registered kind, after importing each module of ``fmlab.data.synthetic`` once.

    Returns:
        kind name -> :class:`SyntheticKind`.

    Examples:
        >>> "canvas" in synthetic_kinds()
        True
    """
    global _loaded
    if not _loaded:
        import fmlab.data.synthetic as pkg

        for mod in pkgutil.iter_modules(pkg.__path__):
            if not mod.name.startswith("_") and mod.name not in ("registry", "source", "rng", "preview"):
                importlib.import_module(f"{pkg.__name__}.{mod.name}")
        _loaded = True
    return SYNTHETIC


def synthetic_kind_of(spec: str) -> str | None:
    """The kind a spec names (``canvas?size=32`` -> ``canvas``), or None for other specs.

    Examples:
        >>> synthetic_kind_of("canvas?size=32"), synthetic_kind_of("npz:x.npz")
        ('canvas', None)
    """
    head = spec.partition("?")[0]
    return head if head in synthetic_kinds() else None
