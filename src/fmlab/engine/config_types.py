"""Typed conversion of YAML / ``--set`` values to a config dataclass's declared field types.

Split from :mod:`fmlab.engine.config` (which re-uses these through its loaders) so the loader
module stays about loading; nothing here is public API.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from fmlab.errors import ConfigError

_NONE_WORDS = {"null", "none", "~", ""}  # --set values meaning None for optional fields

def _suggest(key: str, names: list[str], prefix: str) -> str:
    close = difflib.get_close_matches(key, names, n=1)
    hint = f" (did you mean {prefix + close[0]!r}?)" if close else ""
    known = ", ".join(names)
    return f"{hint}; known keys{' in ' + repr(prefix.rstrip('.')) if prefix else ''}: {known}"


def _is_optional(tp: Any) -> bool:
    return _is_union(tp) and type(None) in typing.get_args(tp)


def _is_union(tp: Any) -> bool:
    origin = typing.get_origin(tp)
    return origin is typing.Union or origin is types.UnionType


def _strip_optional(tp: Any) -> Any:
    if _is_union(tp):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _convert_text(raw: str, tp: Any, key: str) -> Any:
    """Convert a ``--set`` value string: YAML-parse it unless the field is a plain string."""
    base = _strip_optional(tp)
    if _is_optional(tp) and raw.lower() in _NONE_WORDS:
        return None
    if base is str or (typing.get_origin(base) is Literal):
        return _convert(raw, tp, key, "--set")
    try:
        value = yaml.safe_load(raw) if raw else raw
    except yaml.YAMLError:
        value = raw
    return _convert(value, tp, key, "--set")


def _convert(value: Any, tp: Any, key: str, where: str) -> Any:
    def fail(expected: str) -> ConfigError:
        return ConfigError(f"{where}: {key}: expected {expected}, got {value!r}")

    if tp is Any:
        return value
    if _is_union(tp):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise fail(" or ".join(_type_name(a) for a in args))
        last: ConfigError | None = None
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(value, a, key, where)
            except ConfigError as e:
                last = e
        assert last is not None
        raise last
    origin = typing.get_origin(tp)
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(f"{where}: {key}: {value!r} is not one of "
                              f"{', '.join(repr(c) for c in choices)}")
        return value
    if dataclasses.is_dataclass(tp):
        from fmlab.engine.config import from_dict  # the loader builds nested sections

        return from_dict(tp, value if value is not None else {}, where, prefix=f"{key}.")
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "no", "off", "0"):
            return False
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise fail("a boolean (true/false)")
    if tp is int:
        if isinstance(value, bool):
            raise fail("an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                f = float(value.replace("_", ""))
            except ValueError:
                raise fail("an integer") from None
            if f.is_integer():
                return int(f)
        raise fail("an integer")
    if tp is float:
        if isinstance(value, bool):
            raise fail("a number")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads ``1e-3`` as a string
            try:
                return float(value)
            except ValueError:
                raise fail("a number") from None
        raise fail("a number")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise fail("a string")
    if tp is Path:
        if isinstance(value, (str, Path)):
            return Path(value)
        raise fail("a path")
    if origin in (tuple, list):
        if isinstance(value, str):
            value = [v.strip() for v in value.strip("()[] ").split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise fail(f"a list ({_type_name(tp)})")
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise fail(f"{len(args)} values ({_type_name(tp)})")
            return tuple(_convert(v, a, f"{key}[{i}]", where)
                         for i, (v, a) in enumerate(zip(value, args)))
        elem = args[0] if args else Any
        items = [_convert(v, elem, f"{key}[{i}]", where) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise fail("a mapping")
        kt, vt = typing.get_args(tp) or (Any, Any)
        return {_convert(k, kt, key, where): _convert(v, vt, f"{key}.{k}", where)
                for k, v in value.items()}
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise fail(_type_name(tp))


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")
