"""Settings of ``fmlab finetune``, derived from the PEFT method registry.

Every method that declares a :class:`~fmlab.peft.recipe.Recipe` is a fine-tuning method; its recipe
gives the run's defaults (AdamW, cosine schedule with 10% linear warmup, batch 64 or the number of
training images if fewer, ``recipe.max_steps`` optimiser steps) and ``--set KEY=VALUE`` overrides
any setting. The settings class is :class:`FinetuneSettings` plus the ``finetune_settings`` fields
of every registered method (PELA's ``distill_*`` and ``pela_finetune``), so a method's own keys are
declared by the method and ``--set`` knows them. Nothing here names a method.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from fmlab.engine.config import (
    OptimConfig,
    ScheduleConfig,
    TrainerConfig,
    apply_override,
    validate_config,
)
from fmlab.errors import ConfigError
from fmlab.utils.validation import check

DEFAULT_BATCH = 64
WARMUP_FRACTION = 10  # warmup = max_steps // WARMUP_FRACTION unless schedule.warmup* is set

__all__ = ["FinetuneConfig", "FinetuneSettings", "finetune_method", "finetune_methods",
           "methods_help", "options_for", "parse_options", "resolve_settings", "settings_class"]


@dataclass
class FinetuneSettings:
    """Training settings of one run; ``--set KEY=VALUE`` overrides any of them (dotted keys).

    Args:
        trainer, optim, schedule: the engine's sections.
        augment: the training view (pad-and-crop + flip, crop only, or none).
        eval_every_epochs: validate after every this many epochs (0: about
            ``EVALS_PER_RUN`` = 20 validations per run).
        eval_batch_size: images per forward pass when scoring.
        head_init: start the head at the class-mean classifier, or at random.
        head_init_per_class: class means from at most this many images per class (0: all).
        bn_stats: ``auto`` (the method decides: ``trains_norm_statistics``), ``update``, ``frozen``.
    """

    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    augment: Literal["crop_flip", "crop", "none"] = "crop_flip"
    eval_every_epochs: int = 0
    eval_batch_size: int = 256
    head_init: Literal["class_means", "random"] = "class_means"
    head_init_per_class: int = 256
    bn_stats: Literal["auto", "update", "frozen"] = "auto"

    def validate(self, prefix: str = "") -> None:
        """Raise ConfigError naming the first out-of-range key (the method's keys included)."""
        check(self.eval_every_epochs >= 0, f"{prefix}eval_every_epochs", self.eval_every_epochs,
              "must be >= 0")
        check(self.eval_batch_size >= 1, f"{prefix}eval_batch_size", self.eval_batch_size,
              "must be >= 1")
        check(self.head_init_per_class >= 0, f"{prefix}head_init_per_class",
              self.head_init_per_class, "must be >= 0")
        # a zero learning rate (and floor) trains nothing: the run would report its start state
        check(self.optim.lr > 0 or self.schedule.min_lr > 0, f"{prefix}optim.lr", self.optim.lr,
              "must be > 0 (a zero learning rate trains nothing)")
        for cls in _method_settings():
            validate = getattr(cls, "validate", None)
            if callable(validate) and all(hasattr(self, f.name) for f in dataclasses.fields(cls)):
                validate(self, prefix)


def _method_settings() -> list[type]:
    from fmlab.peft import METHODS

    return [METHODS.get(n).finetune_settings for n in METHODS.names()
            if METHODS.get(n).finetune_settings is not None]


_CLASSES: dict[tuple[type, ...], type] = {}


def settings_class() -> type[FinetuneSettings]:
    """:class:`FinetuneSettings` extended with every registered method's ``finetune_settings``.

    Returns:
        A dataclass (built once per set of registered methods); the method fields follow the
        common ones, in method-name order.

    Raises:
        ConfigError: two methods declare the same setting.
    """
    from fmlab.peft.recipe import settings_fields

    extra = tuple(_method_settings())
    if extra not in _CLASSES:
        fields: list[tuple[str, Any, Any]] = []
        seen = {f.name for f in dataclasses.fields(FinetuneSettings)}
        for cls in extra:
            for name, tp, default in settings_fields(cls):
                check(name not in seen, f"{cls.__name__}.{name}", name,
                      "is declared twice (fine-tuning settings of two methods, or a common one)")
                seen.add(name)
                fields.append((name, tp, default))
        _CLASSES[extra] = dataclasses.make_dataclass("FinetuneSettings", fields,
                                                     bases=(FinetuneSettings,))
    return _CLASSES[extra]


def finetune_methods() -> list[str]:
    """Names of the registered PEFT methods that declare a fine-tuning recipe, sorted."""
    from fmlab.peft import METHODS

    return [n for n in METHODS.names() if METHODS.get(n).recipe is not None]


def finetune_method(name: str) -> Any:
    """The registered method ``name``, checked to be usable by ``fmlab finetune``.

    Args:
        name: a ``--method`` entry.

    Returns:
        The :class:`~fmlab.peft.PeftMethod` instance.

    Raises:
        ConfigError: unknown, or registered without a ``recipe`` (the half-registered method).
    """
    from fmlab.peft import METHODS

    if name not in METHODS:
        raise ConfigError(f"--method: unknown method {name!r}; choose from "
                          f"{', '.join(finetune_methods())}")
    impl = METHODS.get(name)
    if impl.recipe is None:
        raise ConfigError(f"--method: peft method {name!r} ({type(impl).__name__}) declares no "
                          "fine-tuning recipe; give its class `recipe = Recipe(lr=...)` "
                          f"(fine-tuning methods: {', '.join(finetune_methods())})")
    return impl


def methods_help() -> str:
    """The per-method defaults, one line each (plus the method's own keys), for ``--help``."""
    from fmlab.peft import METHODS

    lines = []
    for name in finetune_methods():
        impl = METHODS.get(name)
        line = f"  {name:8s} {impl.recipe.describe()}"
        if impl.trains_norm_statistics:
            line += "; updates BatchNorm statistics"
        lines.append(line)
        if impl.finetune_settings is not None:
            keys = [f.name for f in dataclasses.fields(impl.finetune_settings)]
            lines.append(f"           its --set keys: {', '.join(keys)}")
    return "\n".join(lines)


def default_settings(method: str, n_train: int) -> FinetuneSettings:
    """The method's recipe as settings, for a run on ``n_train`` training images.

    Args:
        method: a fine-tuning method name.
        n_train: training images (the batch is at most this many).

    Returns:
        The settings, before ``--set`` overrides.
    """
    recipe = finetune_method(method).recipe
    return settings_class()(
        trainer=TrainerConfig(max_steps=int(recipe.max_steps),
                              batch_size=min(DEFAULT_BATCH, n_train),
                              log_every=10, progress=False, tensorboard=False),
        optim=OptimConfig(name="adamw", lr=recipe.lr, weight_decay=recipe.weight_decay),
        schedule=ScheduleConfig(name="cosine"),
    )


def resolve_settings(method: str, n_train: int, overrides: list[str]) -> FinetuneSettings:
    """The method's defaults with ``--set`` overrides applied, warmup filled in, validated.

    ``trainer.max_steps=0`` keeps the engine's meaning: train ``trainer.epochs`` full epochs.

    Args:
        method: a fine-tuning method name.
        n_train: training images of the run.
        overrides: ``KEY=VALUE`` strings.

    Returns:
        The run's settings.

    Examples:
        >>> s = resolve_settings('linear', 20, ["trainer.max_steps=50"])
        >>> s.trainer.max_steps, s.trainer.batch_size, s.schedule.warmup_steps
        (50, 20, 5)
    """
    s = default_settings(method, n_train)
    for item in overrides:
        apply_override(s, item)
    if not any(o.strip().startswith("schedule.warmup") for o in overrides):
        s.schedule.warmup_steps = s.trainer.max_steps // WARMUP_FRACTION
    validate_config(s)
    return s


@dataclass
class FinetuneConfig:
    """One ``fmlab finetune`` experiment: methods x shots x seeds on one backbone and source.

    Args:
        backbone: the backbone name as typed (the store records the resolved name).
        data: the labelled source spec.
        out: the output directory.
        methods: fine-tuning method names.
        weights: a weights file (None: a random init drawn from ``init_seed``).
        shots, seeds: the split files to draw (as ``fmlab adapt``).
        options: method (``"*"``: all) -> PEFT options.
        targets: module-name patterns for methods that take targets.
        overrides: ``--set`` strings.
        test_split: the evaluated split (default ``test``).
        max_test: score on a seeded random subset of this many test images.
        data_root: where sources live.
        db: the results store (None: none).
        init_seed: seed of the base backbone's random init when ``weights`` is None.
        n_val: validation images per class of the split files (None: ``make_split``'s default;
            0 with ``shots=["all"]``: train on the whole train split, keep the last state).
        train_limit: keep a seeded random subset of this many train-split images (0: all).
        init_from: a ``fmlab finetune pretrain-peft`` directory: the PEFT modules start from its
            pre-trained values (PVP), the head is fresh (see :mod:`fmlab.experiments.finetune_pvp`).
    """

    backbone: str
    data: str
    out: Path
    methods: list[str]
    weights: str | None = None
    shots: list[int | str] = field(default_factory=lambda: [16])
    seeds: list[int] = field(default_factory=lambda: [1, 2, 3])
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    targets: list[str] | None = None
    overrides: list[str] = field(default_factory=list)
    test_split: str | None = None
    max_test: int | None = None
    data_root: str | None = None
    db: Path | None = None
    init_seed: int = 0
    n_val: int | None = None
    train_limit: int = 0
    init_from: Path | None = None


def parse_options(items: list[str], methods: list[str]) -> dict[str, dict[str, Any]]:
    """``--option [METHOD.]KEY=VALUE`` -> {method or ``"*"``: {key: YAML-parsed value}}.

    Args:
        items: the ``--option`` strings.
        methods: the ``--method`` names (a scoped option must name one of them).

    Returns:
        The options by scope.

    Examples:
        >>> parse_options(["r=8", 'lora.alpha=16'], ['lora'])
        {'*': {'r': 8}, 'lora': {'alpha': 16}}
    """
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--option {item!r}: expected [METHOD.]KEY=VALUE, e.g. r=8 or lora.r=8")
        scope, _, name = key.rpartition(".")
        scope = scope or "*"
        if scope != "*" and scope not in methods:
            raise ConfigError(f"--option {item!r}: method {scope!r} is not in --method "
                              f"({','.join(methods)})")
        try:
            value = yaml.safe_load(raw) if raw.strip() else raw
        except yaml.YAMLError:
            value = raw
        out.setdefault(scope, {})[name] = value
    return out


def options_for(cfg: FinetuneConfig, method: str) -> dict[str, Any]:
    """The PEFT options of ``method``: the unscoped ones, then its own (which win)."""
    return {**cfg.options.get("*", {}), **cfg.options.get(method, {})}
