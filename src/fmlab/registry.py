"""A tiny name → factory registry (timm's ``create_model`` idea, without the maze).

A new method is one file plus one ``@REGISTRY.register("name")`` line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from fmlab.errors import FmlabError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to factories; unknown names raise an error that lists the known ones."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return deco

    def add(self, name: str, obj: T) -> None:
        self.register(name)(obj)

    def remove(self, name: str) -> T | None:
        """Unregister ``name`` and return its entry (None if absent).

        For tests and examples that register a throwaway method and must leave the registry as
        shipped; a library never unregisters a name.

        Examples:
            >>> r = Registry("thing")
            >>> r.add("a", 1)
            >>> r.remove("a"), r.names()
            (1, [])
        """
        return self._items.pop(name, None)

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "(none)"
            raise FmlabError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def names(self) -> list[str]:
        return sorted(self._items)
