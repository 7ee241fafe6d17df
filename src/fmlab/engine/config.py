"""Typed configs: YAML into dataclasses, ``--set a.b=c`` overrides, resolved config saved as YAML.

Why our own ~200 lines instead of OmegaConf/Hydra: we need exactly three things — reject unknown
keys with their full dotted path, convert override strings to the field's declared type, and write
the resolved config back — and a plain dataclass stays readable without a registry maze.
This module imports no torch, so the CLI can parse configs cheaply. Sections generated from a
constructor's signature (:func:`config_section_from_signature`) live in ``config_signature``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from fmlab.engine.config_signature import (  # re-exported: the config helpers live here
    config_section_from_signature,
    expand_path,
    signature_params,
)
from fmlab.engine.config_types import (  # the typed conversion the loaders use
    _convert,
    _convert_text,
    _strip_optional,
    _suggest,
)
from fmlab.errors import ConfigError
from fmlab.utils.io import atomic_write
from fmlab.utils.validation import check

__all__ = ["EngineConfig", "MonitorConfig", "OptimConfig", "ScheduleConfig", "TrainerConfig",
           "apply_override", "config_section_from_signature", "config_to_dict", "expand_path",
           "from_dict", "load_config", "read_yaml", "save_config", "signature_params",
           "validate_config"]

C = TypeVar("C")

LOGGERS = ("jsonl", "tensorboard", "mlflow")  # what trainer.loggers may list


@dataclass
class TrainerConfig:
    """How long and how the loop runs. Steps are optimiser steps."""

    max_steps: int = 0  # 0: run ``epochs`` full epochs instead
    epochs: int = 1
    batch_size: int = 256  # global micro-batch, split over ranks; a step uses batch_size*accumulate
    accumulate: int = 1
    seed: int = 0
    grad_clip: float = 0.0  # max global grad norm; 0 disables clipping
    bf16: bool = False  # bfloat16 autocast (CPU or CUDA); weights and optimiser stay float32
    checkpoint_every: int = 0  # steps between checkpoints; 0: only the final one
    keep_last: int = 2  # checkpoints kept on disk
    log_every: int = 50
    progress: bool = True  # tqdm bar on rank 0
    tensorboard: bool = True  # event files when the tensorboard package is installed
    # the run's logs: jsonl (metrics.jsonl, always), tensorboard, mlflow; None: jsonl, plus
    # tensorboard when ``tensorboard`` is true (the older key keeps working)
    loggers: list[str] | None = None
    device: str = "auto"  # auto: cuda:LOCAL_RANK when available, else cpu
    find_unused_parameters: bool = False  # passed to DDP

    def validate(self, prefix: str = "trainer") -> None:
        check(self.max_steps >= 0, f"{prefix}.max_steps", self.max_steps, "must be >= 0")
        check(self.epochs >= 1, f"{prefix}.epochs", self.epochs, "must be >= 1")
        check(self.batch_size >= 1, f"{prefix}.batch_size", self.batch_size, "must be >= 1")
        check(self.accumulate >= 1, f"{prefix}.accumulate", self.accumulate, "must be >= 1")
        check(self.grad_clip >= 0, f"{prefix}.grad_clip", self.grad_clip, "must be >= 0")
        check(self.checkpoint_every >= 0, f"{prefix}.checkpoint_every", self.checkpoint_every, "must be >= 0")
        check(self.keep_last >= 1, f"{prefix}.keep_last", self.keep_last, "must be >= 1")
        check(self.log_every >= 1, f"{prefix}.log_every", self.log_every, "must be >= 1")
        if self.loggers is not None:
            unknown = [x for x in self.loggers if x not in LOGGERS]
            check(not unknown, f"{prefix}.loggers", self.loggers,
                  f"unknown logger(s) {unknown}; choose from {', '.join(LOGGERS)}")
            check("jsonl" in self.loggers, f"{prefix}.loggers", self.loggers,
                  "must include jsonl (metrics.jsonl is what resume and fmlab report read)")
            if "mlflow" in self.loggers and importlib.util.find_spec("mlflow") is None:
                raise ConfigError(f"{prefix}.loggers: 'mlflow' needs the mlflow package, which is not "
                                  "installed; install the extra: pip install -e '.[track]'")

    def active_loggers(self) -> list[str]:
        """The logs this run writes: ``loggers``, or jsonl (+ tensorboard when ``tensorboard``).

        Examples:
            >>> TrainerConfig(tensorboard=False).active_loggers()
            ['jsonl']
            >>> TrainerConfig(loggers=["jsonl", "tensorboard"]).active_loggers()
            ['jsonl', 'tensorboard']
        """
        if self.loggers is not None:
            return list(dict.fromkeys(self.loggers))
        return ["jsonl", "tensorboard"] if self.tensorboard else ["jsonl"]


@dataclass
class OptimConfig:
    """Optimiser. Weight decay never applies to norms, biases, 1-D params, temperatures."""

    name: Literal["adamw", "sgd", "lars"] = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9  # sgd and lars
    nesterov: bool = False  # sgd and lars
    betas: tuple[float, float] = (0.9, 0.999)  # adamw
    eps: float = 1e-8  # adamw
    lars_eta: float = 0.001  # LARS trust coefficient

    def validate(self, prefix: str = "optim") -> None:
        check(self.lr >= 0, f"{prefix}.lr", self.lr, "must be >= 0")
        check(self.weight_decay >= 0, f"{prefix}.weight_decay", self.weight_decay, "must be >= 0")
        check(0 <= self.momentum < 1, f"{prefix}.momentum", self.momentum, "must be in [0, 1)")
        check(all(0 <= b < 1 for b in self.betas), f"{prefix}.betas", self.betas, "must be in [0, 1)")
        check(self.lars_eta > 0, f"{prefix}.lars_eta", self.lars_eta, "must be > 0")


@dataclass
class ScheduleConfig:
    """Learning-rate schedule: linear warmup, then cosine decay to ``min_lr`` (or constant)."""

    name: Literal["cosine", "constant"] = "cosine"
    warmup_steps: int = 0
    warmup_epochs: float = 0.0  # alternative to warmup_steps; converted with steps per epoch
    min_lr: float = 0.0
    final_weight_decay: float | None = None  # cosine weight-decay ramp (DINO: 0.04 -> 0.4)

    def validate(self, prefix: str = "schedule") -> None:
        check(self.warmup_steps >= 0, f"{prefix}.warmup_steps", self.warmup_steps, "must be >= 0")
        check(self.warmup_epochs >= 0, f"{prefix}.warmup_epochs", self.warmup_epochs, "must be >= 0")
        check(not (self.warmup_steps and self.warmup_epochs), f"{prefix}.warmup_epochs",
              self.warmup_epochs, "set either warmup_steps or warmup_epochs, not both")
        check(self.min_lr >= 0, f"{prefix}.min_lr", self.min_lr, "must be >= 0")


@dataclass
class MonitorConfig:
    """Representation monitors run at epoch ends (see :mod:`fmlab.engine.monitors`)."""

    every_epochs: int = 1  # 0 disables
    knn_k: int = 20
    knn_temperature: float = 0.07
    max_train: int = 10000  # labelled bank size for kNN (first rows of a seeded permutation)
    max_val: int = 2000
    batch_size: int = 256
    # collapse warning when std(normalised z) * sqrt(D) falls below: 0.02 sits under a random-init
    # CIFAR ResNet (0.08; a trained one: 0.5) and above a collapsed encoder (< 0.01)
    min_std_ratio: float = 0.02
    min_effective_rank: float = 1.5  # ... or when the effective rank falls below

    def validate(self, prefix: str = "monitor") -> None:
        check(self.every_epochs >= 0, f"{prefix}.every_epochs", self.every_epochs, "must be >= 0")
        check(self.knn_k >= 1, f"{prefix}.knn_k", self.knn_k, "must be >= 1")
        check(self.knn_temperature > 0, f"{prefix}.knn_temperature", self.knn_temperature, "must be > 0")
        check(self.batch_size >= 1, f"{prefix}.batch_size", self.batch_size, "must be >= 1")


@dataclass
class EngineConfig:
    """The engine's sections together; per-command configs may nest these fields instead."""

    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)


# --------------------------------------------------------------------------- loading


def read_yaml(path: str | os.PathLike) -> Any:
    """Parse one YAML file safely (``yaml.safe_load``: no Python objects are built).

    Args:
        path: the file.

    Returns:
        The parsed document (None for an empty file).

    Raises:
        ConfigError: naming the file when it cannot be read, is not UTF-8 text (reliability
            probe F6: this was a ``UnicodeDecodeError`` traceback) or is not valid YAML.

    Examples:
        >>> import tempfile
        >>> bad = Path(tempfile.mkdtemp()) / "latin1.yaml"
        >>> _ = bad.write_bytes(b"name: caf\\xe9\\n")
        >>> read_yaml(bad)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        fmlab.errors.ConfigError: .../latin1.yaml: not UTF-8 text (byte 0xe9 at offset 9); ...
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config ({e.strerror})") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset "
                          f"{e.start}); save the config as UTF-8") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from None


def load_config(path: str | os.PathLike | None, cls: type[C],
                overrides: typing.Iterable[str] = ()) -> C:
    """Read YAML ``path`` (or only defaults when None) into dataclass ``cls``.

    Unknown keys raise :class:`ConfigError` naming the dotted key; afterwards every nested
    ``validate(prefix)`` method runs.

    Args:
        path: a YAML file (UTF-8), or None for the dataclass defaults.
        cls: the config dataclass (sections are nested dataclasses).
        overrides: ``"a.b=value"`` strings (the CLI's ``--set``) applied after the file; each
            value is converted to the field's declared type.

    Returns:
        A validated instance of ``cls``.

    Examples:
        >>> @dataclass
        ... class Run:
        ...     trainer: TrainerConfig = field(default_factory=TrainerConfig)
        >>> load_config(None, Run, ["trainer.max_steps=100"]).trainer.max_steps
        100
        >>> load_config(None, Run, ["trainer.max_stpes=1"])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        fmlab.errors.ConfigError: --set: unknown key 'trainer.max_stpes' (did you mean 'trainer.max_steps'?); ...
    """
    data: Any = {}
    where = "<defaults>"
    if path is not None:
        where = str(path)
        data = read_yaml(path)
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: the top level must be a mapping, got "
                              f"{type(data).__name__}")
    cfg = from_dict(cls, data, where=where)
    for item in overrides:
        apply_override(cfg, item)
    validate_config(cfg)
    return cfg


def selected_name(path: str | os.PathLike | None, overrides: typing.Iterable[str],
                  section: str = "objective") -> tuple[str | None, Any]:
    """The ``<section>.name`` a config file selects, an ``<section>.name=`` override winning, and
    the file's raw data: the loaders whose dataclass depends on that name (generated sections)
    read it before building the config.

    Returns:
        ``(name or None, the YAML data or {})``.

    Examples:
        >>> selected_name(None, ["objective.name=mae"])
        ('mae', {})
    """
    data: Any = read_yaml(path) if path is not None else {}
    name = None
    part = data.get(section) if isinstance(data, dict) else None
    if isinstance(part, dict) and part.get("name") is not None:
        name = str(part["name"])
    for item in overrides:
        key, sep, value = item.partition("=")
        if sep and key.strip() == f"{section}.name":
            name = value.strip()
    return name, data if data is not None else {}


def from_dict(cls: type[C], data: dict[str, Any], where: str = "<dict>", prefix: str = "") -> C:
    """Build dataclass ``cls`` from a nested mapping, converting values to the declared types."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: {prefix or 'config'} must be a mapping, got "
                          f"{type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if key not in names:
            raise ConfigError(f"{where}: unknown key {dotted!r}{_suggest(str(key), names, prefix)}")
        kwargs[key] = _convert(value, hints[key], dotted, where)
    return cls(**kwargs)


def apply_override(cfg: Any, item: str) -> None:
    """Apply one ``"a.b.c=value"`` override in place, typed from the dataclass field."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. trainer.max_steps=100")
    parts = key.split(".")
    obj = cfg
    for i, part in enumerate(parts):
        if isinstance(obj, list):  # a list of sections (a composite's objectives): KEY.INDEX.FIELD
            obj = _list_item(obj, part, key, parts[:i], i == len(parts) - 1)
            continue
        if isinstance(obj, dict):  # a free-form section (a term's own keys), typed when validated
            if i == len(parts) - 1:
                obj[part] = _convert_text(raw.strip(), Any, key)
                return
            if not isinstance(obj.get(part), (dict, list)):
                raise ConfigError(f"--set: unknown key {key!r} ({'.'.join(parts[:i + 1])!r} is not "
                                  "a section)")
            obj = obj[part]
            continue
        if not dataclasses.is_dataclass(obj):
            raise ConfigError(f"--set: unknown key {key!r} ({'.'.join(parts[:i])!r} has no keys)")
        names = [f.name for f in dataclasses.fields(obj) if f.init]
        prefix = "".join(p + "." for p in parts[:i])
        if part not in names:
            raise ConfigError(f"--set: unknown key {key!r}{_suggest(part, names, prefix)}")
        if i < len(parts) - 1:
            obj = getattr(obj, part)
    hint = typing.get_type_hints(type(obj))[parts[-1]]
    if dataclasses.is_dataclass(_strip_optional(hint)):
        raise ConfigError(f"--set: {key!r} is a section; set one of its keys, e.g. {key}.KEY=VALUE")
    setattr(obj, parts[-1], _convert_text(raw.strip(), hint, key))


def _list_item(items: list, part: str, key: str, before: list[str], last: bool) -> Any:
    """``items[int(part)]`` for ``--set objectives.1.weight=...``; the errors name the key."""
    where = ".".join(before)
    if not part.isdigit() or int(part) >= len(items):
        raise ConfigError(f"--set: {key!r}: {where!r} is a list of {len(items)} item(s); address "
                          f"one by its index 0..{len(items) - 1}, e.g. {where}.0.KEY=VALUE")
    if last or not dataclasses.is_dataclass(items[int(part)]):
        raise ConfigError(f"--set: {key!r} is an item of the list {where!r}; set one of its keys, "
                          f"e.g. {key}.KEY=VALUE")
    return items[int(part)]


def validate_config(cfg: Any, prefix: str = "") -> None:
    """Run every nested dataclass's ``validate(prefix)`` (children first)."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            validate_config(value, f"{prefix}{f.name}.")
    validate = getattr(cfg, "validate", None)
    if callable(validate) and prefix:
        validate(prefix.rstrip("."))
    elif callable(validate):
        validate()


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """Plain YAML/JSON-safe dict (tuples become lists, paths strings)."""
    return _plain(dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else cfg)


def save_config(cfg: Any, path: str | os.PathLike) -> None:
    """Write the resolved config as YAML, atomically."""
    with atomic_write(path, "w") as f:
        yaml.safe_dump(config_to_dict(cfg), f, sort_keys=False)


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj
