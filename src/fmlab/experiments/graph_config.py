"""Configs of ``fmlab graph pretrain`` and ``fmlab graph finetune`` (read by the engine's typed loader:
unknown keys are refused by name, ``--set`` overrides are typed).

``data.pretrain`` / ``data.downstream`` are comma-separated dataset specs (``tu:PATH`` or names
under ``$FMLAB_DATA/tu_graphs``); ``data.limit`` keeps the first M graphs of each dataset (0: all).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field

from fmlab.engine.config import OptimConfig, ScheduleConfig, TrainerConfig, load_config
from fmlab.utils.validation import check, finite_float, non_negative_int, positive_int

__all__ = ["GraphDataConfig", "GraphFinetuneConfig", "GraphModelConfig", "GraphObjectiveConfig",
           "GraphPretrainConfig", "load_graph_config"]


@dataclass
class GraphDataConfig:
    pretrain: str = "PROTEINS"  # graphs the encoder is pre-trained on (labels unused)
    downstream: str = "MUTAG"  # the fine-tuning dataset (one spec)
    limit: int = 0  # keep the first M graphs of each dataset (0: all)
    test_fraction: float = 0.2  # of the downstream graphs, per class
    val_fraction: float = 0.1  # of the remaining downstream training graphs
    split_seed: int = 0  # the stratified split's seed (the study uses the run's seed)
    data_root: str | None = None

    def validate(self, prefix: str = "data") -> None:
        check(bool(self.pretrain.strip()), f"{prefix}.pretrain", self.pretrain, "must name a dataset")
        check(bool(self.downstream.strip()) and "," not in self.downstream, f"{prefix}.downstream",
              self.downstream, "must name one dataset")
        non_negative_int(f"{prefix}.limit", self.limit)
        finite_float(f"{prefix}.test_fraction", self.test_fraction, low=0.0, high=0.9, low_open=True)
        finite_float(f"{prefix}.val_fraction", self.val_fraction, low=0.0, high=0.9)


@dataclass
class GraphModelConfig:
    hidden: int = 64
    layers: int = 3

    def validate(self, prefix: str = "model") -> None:
        positive_int(f"{prefix}.hidden", self.hidden)
        positive_int(f"{prefix}.layers", self.layers)


@dataclass
class GraphObjectiveConfig:
    name: str = "graphcl"
    edge_drop: float = 0.2
    feature_mask: float = 0.2
    temperature: float = 0.2
    proj_dim: int = 64

    def validate(self, prefix: str = "objective") -> None:
        check(self.name == "graphcl", f"{prefix}.name", self.name, "must be graphcl (the one graph "
              "pre-training objective)")
        positive_int(f"{prefix}.proj_dim", self.proj_dim)


@dataclass
class GraphPretrainConfig:
    data: GraphDataConfig = field(default_factory=GraphDataConfig)
    model: GraphModelConfig = field(default_factory=GraphModelConfig)
    objective: GraphObjectiveConfig = field(default_factory=GraphObjectiveConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)


@dataclass
class GraphFinetuneConfig:
    data: GraphDataConfig = field(default_factory=GraphDataConfig)
    model: GraphModelConfig = field(default_factory=GraphModelConfig)
    init: str = ""  # encoder.safetensors (or its run folder) of a pre-training run; "": scratch
    init_seed: int = 0  # seed of the random init (encoder when scratch, and the head)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)


def load_graph_config(path: str | os.PathLike | None, kind: str,
                      overrides: Iterable[str] = ()) -> GraphPretrainConfig | GraphFinetuneConfig:
    """The ``pretrain`` or ``finetune`` config from YAML ``path`` plus ``--set`` overrides.

    Examples:
        >>> load_graph_config(None, "finetune", ["trainer.max_steps=3"]).trainer.max_steps
        3
        >>> load_graph_config(None, "pretrain", ["objective.tau=1"])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        fmlab.errors.ConfigError: --set: unknown key 'objective.tau'...
    """
    cls = {"pretrain": GraphPretrainConfig, "finetune": GraphFinetuneConfig}[kind]
    return load_config(path, cls, overrides)
