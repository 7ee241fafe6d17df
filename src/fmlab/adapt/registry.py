"""The adaptation-method registry: every estimator registers itself where it is defined.

``@register_estimator("ncm", sweep_default=True, zeroshot_ensemble=True)`` on a class in its own
file is the whole registration (timm's ``@register_model``). Everything the few-shot workflow and
the CLI need is derived from here: the method names, the default sweep (``sweep_default``), the
``<name>+zs`` variants (``zeroshot_ensemble``: built by the class's
:meth:`~fmlab.adapt.base.Estimator.with_zeroshot`), which methods get augmented views (the class's
``views``), and which inputs the workflow must fill in (the class's ``requires``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from fmlab.errors import ConfigError
from fmlab.registry import Registry

E = TypeVar("E", bound=type)

INPUTS = {
    "zeroshot_weights": "zero-shot class weights (zeroshot_weights=...; fmlab adapt: --text-encoder "
                        "or --clip-model)",
    "model": "an image-text model and class names (fmlab adapt --clip-model RUN_DIR|open_clip:<arch>;"
             " its image embeddings are then the features)",
    "class_names": "the class names (class_names=...)",
    "meta": "a meta-trained initialisation (meta=...; fmlab adapt: --meta META_DIR from "
            "fmlab adapt meta-train)",
}
"""The inputs a method may declare in ``requires``, and what each one is (for error messages)."""


@dataclass(frozen=True)
class MethodSpec:
    """One registered method: its estimator class and how the sweep builds it.

    Attributes:
        name: the method name (``"ncm"``, ``"gda+zs"``).
        cls: the estimator class.
        sweep_default: part of the default sweep of ``fmlab adapt`` and ``fmlab demo``.
        zeroshot_variant: the ``+zs`` fusion of ``cls`` with zero-shot scores.
    """

    name: str
    cls: type
    sweep_default: bool = False
    zeroshot_variant: bool = False

    @property
    def requires(self) -> tuple[str, ...]:
        """Inputs the workflow must provide (the class's ``requires``, plus zero-shot weights
        for a ``+zs`` variant)."""
        req = tuple(self.cls.requires)
        if self.zeroshot_variant and "zeroshot_weights" not in req:
            req += ("zeroshot_weights",)
        return req

    @property
    def uses_views(self) -> bool:
        """Whether the estimator uses augmented training views (its class's ``views``)."""
        return self.cls.views != "none"

    def missing(self, available: Iterable[str]) -> list[str]:
        """The required inputs not in ``available``.

        Args:
            available: names of the inputs the caller can provide.

        Returns:
            The missing ones, in ``requires`` order.
        """
        have = set(available)
        return [k for k in self.requires if k not in have]

    def build(self, inputs: Mapping[str, Any] | None = None, seed: int = 0,
              **params: Any) -> Any:
        """Create the estimator.

        Args:
            inputs: workflow inputs by name (only the ``requires`` ones are used; a value in
                ``params`` wins).
            seed: passed as ``seed`` when the constructor takes one and ``params`` does not.
            **params: constructor arguments.

        Returns:
            The unfitted estimator.

        Raises:
            ConfigError: a required input is missing, or a parameter is unknown.
        """
        inputs = dict(inputs or {})
        needs = {}
        for key in self.requires:
            value = params.pop(key, None)
            if value is None:
                value = inputs.get(key)
            if value is None:
                raise ConfigError(f"method {self.name!r} needs {INPUTS.get(key, repr(key))}")
            needs[key] = value
        if "seed" in inspect.signature(self.cls.__init__).parameters:
            params.setdefault("seed", seed)
        try:
            if self.zeroshot_variant:
                zs = needs.pop("zeroshot_weights")
                return self.cls.with_zeroshot(zs, **needs, **params)
            return self.cls.from_inputs(needs, **params)
        except TypeError as e:
            raise ConfigError(f"bad parameters for adapt method {self.name!r}: {e}") from None

    def summary(self) -> str:
        """The first line of the class docstring (for ``--help``)."""
        doc = inspect.getdoc(self.cls) or self.cls.__name__
        return doc.splitlines()[0].rstrip(".")


class MethodRegistry(Registry[MethodSpec]):
    """A :class:`~fmlab.registry.Registry` of :class:`MethodSpec` that keeps registration order
    (the default sweep's order is the order the classes are defined in)."""

    def in_order(self) -> list[str]:
        """Every name, in registration order."""
        return list(self._items)

    def defaults(self) -> list[str]:
        """The default sweep, in registration order."""
        return [n for n, s in self._items.items() if s.sweep_default]

    def remove(self, name: str) -> MethodSpec | None:
        """Remove ``name`` and its ``+zs`` variant (for tests that register throwaway methods)."""
        super().remove(f"{name}+zs")
        return super().remove(name)


METHODS = MethodRegistry("adapt method")
"""name -> :class:`MethodSpec` for every adaptation method."""


def register_estimator(name: str, *, sweep_default: bool = False,
                       zeroshot_ensemble: bool = False) -> Callable[[E], E]:
    """Class decorator: register an :class:`~fmlab.adapt.base.Estimator` as method ``name``.

    Args:
        name: the method name used by ``fmlab adapt --methods`` and :func:`run_sweep`.
        sweep_default: include it in the default sweep.
        zeroshot_ensemble: also register ``<name>+zs``, the estimator fused with zero-shot
            scores by its class's ``with_zeroshot``.

    Returns:
        The decorator (it returns the class unchanged).

    Examples:
        >>> from fmlab.adapt import NCM
        >>> @register_estimator("ncm_demo", zeroshot_ensemble=True)
        ... class NCMDemo(NCM):
        ...     pass
        >>> "ncm_demo+zs" in METHODS, METHODS.get("ncm_demo").cls is NCMDemo
        (True, True)
        >>> _ = METHODS.remove("ncm_demo")
    """
    def deco(cls: E) -> E:
        METHODS.add(name, MethodSpec(name, cls, sweep_default=sweep_default))
        if zeroshot_ensemble:
            METHODS.add(f"{name}+zs", MethodSpec(f"{name}+zs", cls, zeroshot_variant=True))
        return cls

    return deco


def default_methods() -> list[str]:
    """The default sweep (every class registered with ``sweep_default=True``), in order.

    Returns:
        The method names, in registration order.

    Examples:
        >>> default_methods()
        ['ncm', 'knn', 'linear', 'gda', 'tip', 'tipf']
    """
    _load()
    return METHODS.defaults()


def method_names() -> list[str]:
    """Every registered method.

    Returns:
        The names, in registration order (``+zs`` variants after their base method).
    """
    _load()
    return METHODS.in_order()


def get_method(name: str) -> MethodSpec:
    """The spec registered as ``name``.

    Args:
        name: a method name.

    Returns:
        Its :class:`MethodSpec`.

    Raises:
        FmlabError: unknown name (the message lists the known ones).
    """
    _load()
    return METHODS.get(name)


def uses_views(methods: Iterable[str]) -> list[str]:
    """The methods among ``methods`` that use augmented training views (class ``views``).

    Args:
        methods: method names.

    Returns:
        Those whose class uses views, in the given order.

    Examples:
        >>> uses_views(["ncm", "zeroshot", "tip"])
        ['ncm', 'tip']
    """
    return [m for m in methods if get_method(m).uses_views]


def help_fields() -> dict[str, str]:
    """Texts for ``--help``, generated from the registry.

    Returns:
        ``methods`` (all names), ``default_methods`` (the default sweep, comma-joined),
        ``view_methods`` (those using views) and ``requires`` (which methods need which input).
    """
    names = method_names()
    groups: dict[str, list[str]] = {}
    for n in names:
        for key in get_method(n).requires:
            groups.setdefault(key, []).append(n)
    return {"methods": ", ".join(names), "default_methods": ",".join(default_methods()),
            "view_methods": ", ".join(uses_views(names)),
            "requires": "; ".join(f"{key} needed by {', '.join(ms)}" for key, ms in groups.items())}


def _load() -> None:
    import fmlab.adapt  # noqa: F401  (importing the package defines, and so registers, every method)
