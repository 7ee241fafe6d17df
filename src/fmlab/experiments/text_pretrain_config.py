"""The typed config of ``fmlab text pretrain`` (see :mod:`fmlab.experiments.text_pretrain`).

One YAML per (objective, corpus): ``configs/text/<objective>_<corpus>.yaml``. The ``objective``
section is generated from the registered text objective's constructor (minus what the run fills:
the tokenizer and the size), so every hyperparameter is a typed key with "did you mean" errors.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from fmlab.engine.config import (
    OptimConfig,
    ScheduleConfig,
    TrainerConfig,
    config_section_from_signature,
    load_config,
    selected_name,
)
from fmlab.errors import ConfigError
from fmlab.utils.validation import check

__all__ = ["TextDataConfig", "TextModelConfig", "TextPretrainConfig", "TokenizerConfig",
           "load_text_pretrain_config", "text_objective_class",
           "text_pretrain_config_class"]


@dataclass
class TextModelConfig:
    """Model size (``fmlab.text.models`` size keys; null: the default there)."""

    hidden: int = 128
    layers: int = 2
    heads: int = 2
    intermediate: int | None = None  # default 4 x hidden
    max_positions: int = 512  # learned positions (bert/electra/gpt/ernie); t5 is relative
    dropout: float = 0.1
    decoder_layers: int | None = None  # t5 (default: layers)
    embedding: int | None = None  # electra's shared embedding width (default: hidden)
    task_layers: int = 1  # ernie: layers of each task-specific branch

    def size(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass
class TokenizerConfig:
    """Train a tokenizer on the training texts at the start of the run, or load ``path``."""

    path: str | None = None  # a save_pretrained folder (tokenizer.json); may use ${VAR}
    kind: str | None = None  # wordpiece | unigram | bpe (default: the objective's kind)
    vocab_size: int = 4000
    lowercase: bool = True

    def validate(self, prefix: str = "tokenizer") -> None:
        check(self.kind in (None, "wordpiece", "unigram", "bpe"), f"{prefix}.kind", self.kind,
              "must be wordpiece, unigram or bpe")
        check(self.vocab_size >= 1, f"{prefix}.vocab_size", self.vocab_size, "must be >= 1")


@dataclass
class TextDataConfig:
    """Training texts: ``fmlab.data.text.load_text(source, split, limit=...)`` packed into blocks."""

    source: str = "shakespeare"
    split: str = "train"
    data_root: str | None = None  # default: $FMLAB_DATA
    limit: int = 0  # keep the first M texts (0: all)
    block_size: int = 128

    def validate(self, prefix: str = "data") -> None:
        check(self.limit >= 0, f"{prefix}.limit", self.limit, "must be >= 0")
        check(self.block_size >= 2, f"{prefix}.block_size", self.block_size, "must be >= 2")


@dataclass
class TextObjectiveSection:
    """Base of the generated ``objective`` sections."""

    name: str = ""


@dataclass
class TextPretrainConfig:
    """One text pre-training run (see ``configs/text/*.yaml``)."""

    name: str = "text_pretrain"
    # continued pre-training: start from this saved model (RUN_DIR/model of an earlier run, same
    # architecture and vocabulary; give its tokenizer as tokenizer.path); null: random init
    init: str | None = None
    objective: TextObjectiveSection = field(default_factory=TextObjectiveSection)
    model: TextModelConfig = field(default_factory=TextModelConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    data: TextDataConfig = field(default_factory=TextDataConfig)
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(batch_size=32,
                                                                           log_every=10))
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=5e-4, weight_decay=0.01))
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)


_CLASSES: dict[type, type] = {}


def text_objective_class(name: str) -> type:
    """The registered text objective ``name``, or a ConfigError listing the known ones.

    Examples:
        >>> text_objective_class("mlm").__name__
        'MLM'
    """
    from fmlab.text.objectives import TEXT_OBJECTIVES

    if name not in TEXT_OBJECTIVES:
        import difflib

        close = difflib.get_close_matches(name, TEXT_OBJECTIVES.names(), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"objective.name: unknown text objective {name!r}{hint}; known: "
                          f"{', '.join(TEXT_OBJECTIVES.names())}")
    return TEXT_OBJECTIVES.get(name)


def text_pretrain_config_class(objective: str) -> type[TextPretrainConfig]:
    """The :class:`TextPretrainConfig` subclass whose ``objective`` section is typed from the
    objective's constructor.

    Examples:
        >>> sorted(vars(text_pretrain_config_class("ul2")().objective))
        ['mode_tokens', 'name', 'r_ratio', 's_ratio', 'x_ratio']
    """
    cls = text_objective_class(objective)
    if cls in _CLASSES:
        return _CLASSES[cls]
    tag = re.sub(r"\W", "_", objective)
    section = config_section_from_signature(
        f"TextObjective_{tag}", cls.__init__, skip=set(cls.filled_by_run),
        base=TextObjectiveSection, cls=cls, extra=(("name", str, objective),))
    config_cls = dataclasses.make_dataclass(
        f"TextPretrainConfig_{tag}", [("objective", section, field(default_factory=section))],
        bases=(TextPretrainConfig,), namespace={"__doc__": TextPretrainConfig.__doc__})
    _CLASSES[cls] = config_cls
    return config_cls


def load_text_pretrain_config(path: str | os.PathLike | None,
                              overrides: Iterable[str] = ()) -> TextPretrainConfig:
    """Read a text pre-training YAML plus ``--set`` items (its ``objective.name`` picks the
    generated section).

    Args:
        path: the YAML file.
        overrides: ``KEY=VALUE`` strings applied after the file.

    Returns:
        The validated config.
    """
    overrides = list(overrides)
    name, _ = selected_name(path, overrides)
    if name is None:
        raise ConfigError(f"{path or '<defaults>'}: objective.name is missing")
    return load_config(path, text_pretrain_config_class(name), overrides)
