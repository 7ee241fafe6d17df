"""The typed config of ``fmlab retrieval domains | train | eval`` (Dark Side augmentation).

One YAML per experiment (``configs/retrieval/darkside_cifar10.yaml``), ``--set`` overrides; the
engine's sections are nested as they are, so unknown keys and wrong types are refused by name.

Splits (all from ``data.split_seed``; documented in docs/methods.md):

* day metric-learning images: the first ``data.train_limit`` rows of a seeded permutation of the
  train split; the *scarce night* set: the next ``night.scarce`` rows, degraded with
  ``night.train_seed`` — only the translator sees it (unpaired, unlabelled);
* evaluation: a seeded permutation of the test split; the first ``data.queries`` rows are
  queries, the next ``data.database`` the database; their night versions use ``night.eval_seed``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from fmlab.data.night import NightSpec
from fmlab.engine.config import OptimConfig, ScheduleConfig, TrainerConfig, load_config
from fmlab.utils.validation import check

__all__ = ["DarkSideConfig", "POSITIVES", "load_darkside_config"]

RESNET20 = "${FMLAB_DATA}/weights/resnet_cifar10/resnet20-12fca82f.th"
# where a pool item's night version comes from: none (baseline: day images only), translated
# (a day→night translator run), degraded (the true degradation: an oracle upper bound)
POSITIVES = ("none", "translated", "degraded")


@dataclass
class RetrievalDataConfig:
    source: str = "cifar10"        # labelled RGB source (fmlab.data.open_source spec)
    data_root: str | None = None   # default: $FMLAB_DATA
    split_seed: int = 0
    train_limit: int = 10000       # day images for metric learning
    translator_day: int = 5000     # day images written for the translator (the plentiful domain)
    queries: int = 1000
    database: int = 4000

    def validate(self, prefix: str = "data") -> None:
        for key in ("train_limit", "translator_day", "queries", "database"):
            check(getattr(self, key) >= 1, f"{prefix}.{key}", getattr(self, key), "must be >= 1")


@dataclass
class NightConfig:
    spec: NightSpec = field(default_factory=NightSpec)
    scarce: int = 500              # night images the translator learns from
    train_seed: int = 1            # degradation seed of the scarce set (and of the oracle arm)
    eval_seed: int = 2             # degradation seed of the night queries and database

    def validate(self, prefix: str = "night") -> None:
        check(self.scarce >= 1, f"{prefix}.scarce", self.scarce, "must be >= 1")
        check(self.train_seed != self.eval_seed, f"{prefix}.eval_seed", self.eval_seed,
              "must differ from night.train_seed (evaluation nights are unseen)")


@dataclass
class AugmentConfig:
    positives: str = "none"        # none | translated | degraded
    translator: str = ""           # run directory of `fmlab translate train` (positives: translated)
    pair_prob: float = 0.5         # P(positive = the anchor's other-domain variant)
    brightness: float = 0.4        # photometric jitter (every arm)
    contrast: float = 0.4
    saturation: float = 0.4
    noise: float = 0.03

    def validate(self, prefix: str = "augment") -> None:
        check(self.positives in POSITIVES, f"{prefix}.positives", self.positives,
              f"must be one of {', '.join(POSITIVES)}")
        check(self.positives != "translated" or bool(self.translator), f"{prefix}.translator",
              self.translator, "must name a translator run (positives: translated)")
        check(0.0 <= self.pair_prob <= 1.0, f"{prefix}.pair_prob", self.pair_prob,
              "must lie in [0, 1]")
        for key in ("brightness", "contrast", "saturation", "noise"):
            check(getattr(self, key) >= 0, f"{prefix}.{key}", getattr(self, key), "must be >= 0")


@dataclass
class MiningConfig:
    anchors: int = 16              # tuples per step
    negatives: int = 4             # hard negatives per tuple
    diverse: bool = True           # diverse anchor mining (false: random anchors)
    exclude: float = 0.8           # DAM: most-similar fraction not eligible as the next anchor

    def validate(self, prefix: str = "mining") -> None:
        check(self.anchors >= 1, f"{prefix}.anchors", self.anchors, "must be >= 1")
        check(self.negatives >= 1, f"{prefix}.negatives", self.negatives, "must be >= 1")
        check(0.0 <= self.exclude < 1.0, f"{prefix}.exclude", self.exclude, "must lie in [0, 1)")


@dataclass
class RetrievalModelConfig:
    backbone: str = "resnet20_cifar"   # needs a trunk with forward_map
    weights: str = RESNET20            # '' : random initialisation
    gem_p: float = 3.0
    freeze_bn: bool = True
    loss: str = "contrastive"          # fmlab.retrieval.LOSSES
    margin: float = 0.7

    def validate(self, prefix: str = "model") -> None:
        from fmlab.retrieval.losses import LOSSES

        check(self.loss in LOSSES, f"{prefix}.loss", self.loss, f"must be one of {', '.join(LOSSES)}")
        check(self.gem_p > 0, f"{prefix}.gem_p", self.gem_p, "must be > 0")
        check(self.margin > 0, f"{prefix}.margin", self.margin, "must be > 0")


@dataclass
class DarkSideConfig:
    """One Dark Side augmentation run (see ``configs/retrieval/darkside_cifar10.yaml``)."""

    name: str = "darkside"
    data: RetrievalDataConfig = field(default_factory=RetrievalDataConfig)
    night: NightConfig = field(default_factory=NightConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    mining: MiningConfig = field(default_factory=MiningConfig)
    model: RetrievalModelConfig = field(default_factory=RetrievalModelConfig)
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(batch_size=64,
                                                                         log_every=25))
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-4))
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)

    def validate(self) -> None:
        check(self.trainer.max_steps >= 1, "trainer.max_steps", self.trainer.max_steps,
              "must be >= 1 (a retrieval run counts steps)")
        pool = self.trainer.batch_size * (1 if self.augment.positives == "none" else 2)
        check(self.mining.anchors <= pool, "mining.anchors", self.mining.anchors,
              f"must be <= the pool of a step ({pool} images)")


def load_darkside_config(path: str | os.PathLike | None,
                         overrides: list[str] | tuple[str, ...] = ()) -> DarkSideConfig:
    """Read a Dark Side YAML (or the defaults) with ``--set`` overrides, validated."""
    return load_config(path, DarkSideConfig, overrides)
