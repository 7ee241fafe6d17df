"""``fmlab gan unlearn`` settings from a YAML file, ``--set`` overrides and explicit flags.

The fields are those of :class:`~fmlab.experiments.unlearn.UnlearnConfig` (stage sections
``adapt`` and ``unlearn`` are :class:`~fmlab.gan.unlearn.StageConfig`), read with the engine's
typed config reader, so unknown keys and wrong types are errors that name the file and the key.
The shipped ``configs/gan/unlearn_mnist_mlp.yaml`` holds the defaults the study chose
(docs/methods.md); a run is that file plus the generator, the class and the output folder.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from fmlab.engine.config import apply_override, from_dict
from fmlab.errors import ConfigError
from fmlab.experiments.unlearn import UnlearnConfig


def _read_mapping(path: str | os.PathLike) -> dict[str, Any]:
    where = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{where}: cannot read config ({e.strerror})") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{where}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{where}: invalid YAML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: the top level must be a mapping, got {type(data).__name__}")
    return data


def _put(data: dict[str, Any], key: str, value: Any) -> None:
    head, _, rest = key.partition(".")
    if rest:
        section = data.setdefault(head, {})
        if not isinstance(section, dict):
            raise ConfigError(f"{head}: must be a mapping, got {type(section).__name__}")
        _put(section, rest, value)
    else:
        data[head] = value


def _revalidate(cfg: Any) -> Any:
    """Rebuild ``cfg`` (and its nested dataclasses) so their ``__post_init__`` checks see --set."""
    changes = {f.name: _revalidate(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)
               if f.init and dataclasses.is_dataclass(getattr(cfg, f.name))}
    return dataclasses.replace(cfg, **changes)


def load_dataclass_config(cls: type, path: str | os.PathLike | None,
                          overrides: Iterable[str] = (),
                          values: Mapping[str, Any] | None = None) -> Any:
    """A ``cls`` dataclass from a YAML file, then ``values`` (explicit flags), then ``--set``.

    Shared by the GAN workflows whose settings are one flat dataclass with nested sections
    (``gan unlearn``, ``gan adapt``): unknown keys and wrong types are errors naming the file
    and the key, and ``__post_init__`` checks run again after the overrides.
    """
    data = _read_mapping(path) if path is not None else {}
    for key, value in (values or {}).items():
        _put(data, key, value)
    where = str(path) if path is not None else "<flags>"
    cfg = from_dict(cls, data, where=where)
    for item in overrides:
        apply_override(cfg, item)
    return _revalidate(cfg)


def load_unlearn_config(path: str | os.PathLike | None, overrides: Iterable[str] = (),
                        values: Mapping[str, Any] | None = None) -> UnlearnConfig:
    """The unlearning settings: file, then ``values`` (explicit flags), then ``--set`` overrides.

    Args:
        path: a YAML file of :class:`UnlearnConfig` keys, or None for the defaults.
        overrides: ``"key=value"`` strings (``--set``), dotted for stage keys
            (``unlearn.steps=200``); applied last and type-converted.
        values: settings given explicitly (CLI flags), by dotted key; they replace the file's.

    Returns:
        The validated config.

    Examples:
        >>> cfg = load_unlearn_config(None, ["unlearn.steps=7"],
        ...                           {"generator": "G.ckpt", "target_class": 3, "out": "runs/u"})
        >>> cfg.unlearn.steps, cfg.adapt.steps, cfg.repulsion
        (7, 400, 'nl2')
        >>> load_unlearn_config(None, ["gama=2"], {"generator": "G", "target_class": 1,
        ...                     "out": "o"})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        fmlab.errors.ConfigError: --set: unknown key 'gama' (did you mean 'gamma'?); known keys: ...
    """
    return load_dataclass_config(UnlearnConfig, path, overrides, values)
