"""The typed config of ``fmlab pretrain`` (see :mod:`fmlab.experiments.pretrain`).

One YAML file per (objective, data). The ``objective`` and ``augment`` sections are generated
from the registered objective's constructor and ``default_transform`` signatures
(:func:`fmlab.engine.config.config_section_from_signature`), leaving out what the class declares
the run fills in (``filled_by_run``, ``needs``, ``transform_filled``) and adding its
``config_fields``. So every hyperparameter an objective has is a typed YAML / ``--set`` key with
"did you mean" errors, and no second list of options is kept by hand.
"""

from __future__ import annotations

import dataclasses
import os
import re
import typing
from dataclasses import dataclass, field
from typing import Any

from fmlab.engine.config import (
    MonitorConfig,
    OptimConfig,
    ScheduleConfig,
    TrainerConfig,
    config_section_from_signature,
    load_config,
    selected_name,
)
from fmlab.errors import ConfigError
from fmlab.utils.validation import check

__all__ = ["AugmentSection", "ModelConfig", "ObjectiveSection", "PretrainConfig",
           "PretrainDataConfig", "TermSection", "load_pretrain_config", "objective_class",
           "pretrain_config_class", "term_sections"]


# --------------------------------------------------------------------------- config


@dataclass
class ModelConfig:
    """The backbone to pre-train: ``create_backbone(arch, weights=weights, **kwargs)``."""

    arch: str = "resnet20_cifar"
    kwargs: dict[str, Any] = field(default_factory=dict)
    weights: str | None = None  # start from these weights (continued pre-training); may use ${VAR}


@dataclass
class PretrainDataConfig:
    """Training images: ``split`` in a seeded order, ``val_size`` held out at the end of that
    order, the first ``limit`` of the rest."""

    source: str = "cifar10"  # fmlab.data.open_source spec: cifar10, mnist, npz:PATH, folder:PATH
    split: str = "train"
    data_root: str | None = None  # default: $FMLAB_DATA
    limit: int = 0  # keep the first M training images (0: all)
    val_size: int = 1000  # images held out of training as kNN-monitor queries (0: none)
    # the split is first put in this seeded order (CIFAR-10's file is sorted by class), so the
    # held-out queries and the first ``limit`` images are class-mixed; null: file order
    order_seed: int | None = 0
    # symmetric label noise on the training labels (fmlab.data.label_noise): each flipped with
    # this probability to a uniformly drawn different class, drawn from noise_seed; the held-out
    # monitor queries keep their clean labels
    label_noise: float = 0.0
    noise_seed: int = 0

    def validate(self, prefix: str = "data") -> None:
        check(self.limit >= 0, f"{prefix}.limit", self.limit, "must be >= 0")
        check(self.val_size >= 0, f"{prefix}.val_size", self.val_size, "must be >= 0")
        check(isinstance(self.label_noise, (int, float)) and 0.0 <= self.label_noise < 1.0,
              f"{prefix}.label_noise", self.label_noise, "must be a number in [0, 1)")


@dataclass
class TermSection:
    """One entry of a composite config's ``objectives`` list (see
    :class:`fmlab.pretrain.composite.CompositeObjective`): a registered objective, its weight and
    weight schedule, and its own ``objective`` / ``augment`` keys (typed and checked as in a
    single-objective config)."""

    name: str = ""
    weight: float = 1.0
    schedule: str = "constant"  # or "linear": ramp from 0 to weight over ramp_steps steps
    ramp_steps: int = 0
    objective: dict[str, Any] = field(default_factory=dict)
    augment: dict[str, Any] = field(default_factory=dict)


@dataclass
class ObjectiveSection:
    """Base of the generated ``objective`` sections: the registry name of the objective
    (each generated section defaults it to its own objective)."""

    name: str = ""


@dataclass
class AugmentSection:
    """Base of the generated ``augment`` sections (the objective's ``default_transform``)."""


@dataclass
class PretrainConfig:
    """One pre-training run (see ``configs/pretrain/*.yaml``).

    Use :func:`pretrain_config_class` / :func:`load_pretrain_config`: they swap in the
    ``objective`` and ``augment`` sections of the named objective.
    """

    name: str = "pretrain"
    model: ModelConfig = field(default_factory=ModelConfig)
    objective: ObjectiveSection = field(default_factory=ObjectiveSection)
    augment: AugmentSection = field(default_factory=AugmentSection)
    data: PretrainDataConfig = field(default_factory=PretrainDataConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    objectives: list[TermSection] = field(default_factory=list)  # objective.name: composite


_CLASSES: dict[type, type] = {}  # objective class -> its PretrainConfig subclass


def objective_class(name: str) -> type:
    """The registered objective class ``name``, or a ConfigError listing the known ones.

    Args:
        name: the ``objective.name`` value.

    Returns:
        The :class:`fmlab.pretrain.Objective` subclass.
    """
    from fmlab.pretrain import OBJECTIVES

    if name not in OBJECTIVES:
        import difflib

        close = difflib.get_close_matches(name, OBJECTIVES.names(), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"objective.name: unknown objective {name!r}{hint}; known: "
                          f"{', '.join(OBJECTIVES.names())}")
    return OBJECTIVES.get(name)


def pretrain_config_class(objective: str) -> type[PretrainConfig]:
    """The :class:`PretrainConfig` subclass for one registered objective.

    Args:
        objective: a registered objective name.

    Returns:
        A dataclass whose ``objective`` section is typed from the class's constructor (minus
        what the run fills: ``filled_by_run`` and ``needs``; plus its ``config_fields``) and
        whose ``augment`` section is typed from its ``default_transform``.

    Examples:
        >>> from fmlab.pretrain import SimCLR
        >>> section = pretrain_config_class(SimCLR.name)().objective
        >>> sorted(vars(section))  # no encoder, feature_dim, head, nor SupCon's switch
        ['name', 'proj_dim', 'proj_hidden_dim', 'proj_layers', 'temperature']
    """
    cls = objective_class(objective)
    if cls in _CLASSES:
        return _CLASSES[cls]
    tag = re.sub(r"\W", "_", objective)
    obj_section = config_section_from_signature(
        f"Objective_{tag}", cls.__init__, skip={*cls.filled_by_run, *cls.needs},
        base=ObjectiveSection, cls=cls, extra=(("name", str, objective), *cls.config_fields))
    aug_section = config_section_from_signature(
        f"Augment_{tag}", cls.default_transform, skip=cls.transform_filled, base=AugmentSection)
    config_cls = dataclasses.make_dataclass(
        f"PretrainConfig_{tag}",
        [("objective", obj_section, field(default_factory=obj_section)),
         ("augment", aug_section, field(default_factory=aug_section))],
        bases=(PretrainConfig,),
        namespace={"__doc__": PretrainConfig.__doc__, "validate": _validate_config})
    _CLASSES[cls] = config_cls
    return config_cls


def _validate_config(cfg: PretrainConfig) -> None:
    """Cross-section checks (each section has already checked its own keys)."""
    from fmlab.pretrain import OBJECTIVES

    check(cfg.objective.name in OBJECTIVES, "objective.name", cfg.objective.name,
          f"is not a registered objective ({', '.join(OBJECTIVES.names())})")
    check(_CLASSES.get(OBJECTIVES.get(cfg.objective.name)) is type(cfg), "objective.name",
          cfg.objective.name, "does not match the objective section this config was loaded with")
    composite = getattr(OBJECTIVES.get(cfg.objective.name), "builds_terms", False)
    check(bool(cfg.objectives) == composite, "objectives", len(cfg.objectives),
          "terms need objective.name: composite" if cfg.objectives
          else f"objective {cfg.objective.name!r} needs a non-empty objectives list")
    for i, term in enumerate(cfg.objectives):
        term_sections(term, f"objectives[{i}]")


def term_sections(term: TermSection, where: str) -> tuple[Any, Any]:
    """The typed ``(objective, augment)`` sections of one composite term, checked.

    Args:
        term: the term's entry.
        where: its position in the config (``objectives[1]``), for error messages.

    Returns:
        Instances of the term objective's generated section classes.

    Raises:
        ConfigError: an unknown or nested-composite name, a negative weight, an unknown
            schedule, or an unknown key, each named with ``where``.
    """
    from fmlab.engine.config import from_dict

    if not term.name:
        raise ConfigError(f"{where}.name: missing (a registered objective)")
    try:
        cls = objective_class(term.name)
    except ConfigError as e:
        raise ConfigError(f"{where}.name: {str(e).removeprefix('objective.name: ')}") from None
    check(not getattr(cls, "builds_terms", False), f"{where}.name", term.name,
          "cannot be a term of a composite")
    check(term.weight >= 0, f"{where}.weight", term.weight, "must be >= 0")
    check(term.schedule in ("constant", "linear"), f"{where}.schedule", term.schedule,
          "must be 'constant' or 'linear'")
    check(term.ramp_steps >= 0, f"{where}.ramp_steps", term.ramp_steps, "must be >= 0")
    config_cls = pretrain_config_class(term.name)
    hints = typing.get_type_hints(config_cls)
    objective = from_dict(hints["objective"], {**term.objective, "name": term.name},
                          where, prefix=f"{where}.objective.")
    augment = from_dict(hints["augment"], dict(term.augment), where, prefix=f"{where}.augment.")
    for section, prefix in ((objective, "objective"), (augment, "augment")):
        validate = getattr(section, "validate", None)
        if callable(validate):
            validate(f"{where}.{prefix}")
    return objective, augment


def load_pretrain_config(path: str | os.PathLike | None,
                         overrides: typing.Iterable[str] = ()) -> PretrainConfig:
    """Read a pre-training YAML plus ``--set`` items.

    Args:
        path: the YAML file (UTF-8); its ``objective.name`` (or an ``objective.name=`` override)
            picks the generated sections.
        overrides: ``KEY=VALUE`` strings applied after the file.

    Returns:
        The validated config.
    """
    from fmlab.pretrain import OBJECTIVES

    overrides = list(overrides)
    name, data = selected_name(path, overrides)
    if name is None and isinstance(data, dict) and data.get("objectives"):
        name = "composite"  # an objectives list alone makes a composite run
    if name is None:
        raise ConfigError(f"{path or '<defaults>'}: objective.name is missing (one of "
                          f"{', '.join(OBJECTIVES.names())})")
    return load_config(path, pretrain_config_class(name), overrides)
