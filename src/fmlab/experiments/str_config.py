"""Configs of ``fmlab str`` (DPTR): the towers' CLIP stage, text-only pre-training, fine-tuning.

Each is a dataclass read by :func:`fmlab.engine.config.load_config` (unknown keys refused by name,
``--set`` overrides). ``data.source`` is a ``strings?...`` spec; ``data.limit`` keeps its first M
training strings (0: all).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fmlab.engine.config import OptimConfig, ScheduleConfig, TrainerConfig, load_config
from fmlab.utils.validation import check, finite_float, non_negative_int, positive_int

__all__ = ["AlignConfig", "DecoderSpec", "FinetuneConfig", "OrpConfig", "PretrainConfig", "StrDataConfig",
           "TowerSpec", "load_str_config"]

MNIST_STRINGS = "strings?objects=mnist&n_train=20000&n_test=500&seed=0"


@dataclass
class StrDataConfig:
    source: str = MNIST_STRINGS
    limit: int = 0  # keep the first M training strings (0: all)
    data_root: str | None = None

    def validate(self, prefix: str = "data") -> None:
        check(self.source.startswith("strings"), f"{prefix}.source", self.source, "must be a strings?... spec")
        non_negative_int(f"{prefix}.limit", self.limit)


@dataclass
class TowerSpec:
    dim: int = 64  # joint token width
    width: int = 16  # conv channels of the image tower
    heads: int = 4
    max_columns: int = 64
    temperature: float = 0.07  # initial CLIP temperature
    loss: str = "filip"  # filip: token-wise late interaction; clip: pooled embeddings only

    def validate(self, prefix: str = "towers") -> None:
        for k in ("dim", "width", "heads", "max_columns"):
            positive_int(f"{prefix}.{k}", getattr(self, k))
        check(self.dim % self.heads == 0, f"{prefix}.heads", self.heads, f"must divide dim {self.dim}")
        finite_float(f"{prefix}.temperature", self.temperature, low=1e-4)
        check(self.loss in ("filip", "clip"), f"{prefix}.loss", self.loss, "must be filip or clip")


@dataclass
class DecoderSpec:
    d_model: int = 64
    heads: int = 4
    layers: int = 2

    def validate(self, prefix: str = "decoder") -> None:
        for k in ("d_model", "heads", "layers"):
            positive_int(f"{prefix}.{k}", getattr(self, k))
        check(self.d_model % self.heads == 0, f"{prefix}.heads", self.heads, f"must divide d_model {self.d_model}")


@dataclass
class OrpConfig:
    perturb: bool = True  # DPTR's Offline Randomised Perturbation
    beta_max: float = 0.1  # beta ~ U(0, beta_max)
    bank_source: str = "cifar10"  # natural images for e_img (FMLAB_DATA's CIFAR-10 is a JPEG copy)
    bank_size: int = 1000  # first M training images of bank_source

    def validate(self, prefix: str = "orp") -> None:
        finite_float(f"{prefix}.beta_max", self.beta_max, low=0.0)
        positive_int(f"{prefix}.bank_size", self.bank_size)


@dataclass
class AlignConfig:
    """``fmlab str align``: the towers' CLIP stage on string images + transcriptions."""

    towers: TowerSpec = field(default_factory=TowerSpec)
    data: StrDataConfig = field(default_factory=lambda: StrDataConfig(
        source="strings?objects=mnist&n_train=50000&n_test=500&seed=1000"))
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(max_steps=500, batch_size=128, log_every=50))
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=2e-3, weight_decay=0.01))
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)


@dataclass
class PretrainConfig:
    """``fmlab str pretrain``: the decoder on text-tower tokens of random transcriptions (no images)."""

    towers: str = ""  # run directory of fmlab str align
    decoder: DecoderSpec = field(default_factory=DecoderSpec)
    orp: OrpConfig = field(default_factory=OrpConfig)
    data: StrDataConfig = field(default_factory=lambda: StrDataConfig(limit=100000))
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(max_steps=1000, batch_size=128, log_every=50))
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-3, weight_decay=0.01))
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)

    def validate(self) -> None:
        check(bool(self.towers), "towers", self.towers, "must name a run directory of fmlab str align")


@dataclass
class FinetuneConfig:
    """``fmlab str finetune``: the decoder on the image tower's tokens of ``data.limit`` labelled strings."""

    init: str = ""  # a pretrain run directory, or "none" (decoder from scratch); the CLI's --init
    towers: str = ""  # align run; default: the init run's towers (required with init none)
    decoder: DecoderSpec = field(default_factory=DecoderSpec)  # used with --init none only
    train_image_tower: bool = False  # False: the image tower stays frozen (only the decoder learns)
    data: StrDataConfig = field(default_factory=lambda: StrDataConfig(limit=100))
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(max_steps=300, batch_size=32, log_every=50))
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-3, weight_decay=0.01))
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)

    def validate(self) -> None:
        check(bool(self.init), "init", self.init, "must be a pretrain run directory or none (--init)")


def load_str_config(path: str | Path | None, cls: type, overrides=()):
    """Load a ``configs/str/*.yaml`` file into ``cls`` (:class:`AlignConfig`, :class:`PretrainConfig`,
    :class:`FinetuneConfig`), with ``--set`` overrides; unknown keys raise ConfigError naming them.

    Examples:
        >>> load_str_config(None, FinetuneConfig, ["init=none", "data.limit=10"]).data.limit
        10
    """
    return load_config(path, cls, overrides)
