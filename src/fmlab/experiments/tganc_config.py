"""Config of the TGANs-C text-to-video experiment (``fmlab gan train --config configs/gan/video_tganc.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fmlab.engine.config import OptimConfig, ScheduleConfig, TrainerConfig, load_config
from fmlab.gan.video_objective import COHERENCE
from fmlab.utils.validation import check, finite_float, non_negative_int, positive_int

__all__ = ["TGANCConfig", "load_tganc_config"]


@dataclass
class TGANCDataConfig:
    source: str = "mnist"       # digits of this labelled source bounce in the clips
    data_root: str | None = None
    clips: int = 8000           # training clips rendered from the train split's digits
    limit: int = 0              # keep the first M training clips (0: all)
    frames: int = 8
    size: int = 32
    object_size: int = 16
    encoder: str = "text:minilm"

    def validate(self, prefix: str = "data") -> None:
        positive_int(f"{prefix}.clips", self.clips)
        non_negative_int(f"{prefix}.limit", self.limit)
        check(self.frames % 4 == 0, f"{prefix}.frames", self.frames, "must be a multiple of 4")
        check(self.size % 8 == 0, f"{prefix}.size", self.size, "must be a multiple of 8")
        check(0 < self.object_size < self.size, f"{prefix}.object_size", self.object_size,
              f"must lie in (0, {self.size})")


@dataclass
class TGANCModelConfig:
    z_dim: int = 64
    c_dim: int = 32
    g_ch: int = 16
    d_ch: int = 16
    d_sn: bool = True           # spectral norm in every discriminator
    d_mbstd: bool = False       # minibatch-std feature in every D's head (sees a collapsed G)

    def validate(self, prefix: str = "model") -> None:
        for k in ("z_dim", "c_dim", "g_ch", "d_ch"):
            positive_int(f"{prefix}.{k}", getattr(self, k))


@dataclass
class TGANCLossConfig:
    base: str = "vanilla"       # vanilla (log form) | hinge
    mismatch: bool = True       # real clip + wrong caption as a fake pair
    coherence: str = "penalty"  # none | penalty (TGANs-C-C) | motion (TGANs-C-A)
    coherence_weight: float = 1.0
    flip_p: float = 0.0

    def validate(self, prefix: str = "gan") -> None:
        check(self.base in ("vanilla", "hinge"), f"{prefix}.base", self.base, "must be vanilla or hinge")
        check(self.coherence in COHERENCE, f"{prefix}.coherence", self.coherence,
              f"must be one of {COHERENCE}")
        finite_float(f"{prefix}.coherence_weight", self.coherence_weight, low=0.0)
        finite_float(f"{prefix}.flip_p", self.flip_p, low=0.0, high=1.0)


@dataclass
class TGANCEvalConfig:
    n: int = 500                # generated clips, captions of test-split clips
    seed: int = 0
    classifier_steps: int = 800   # the held-out digit / direction clip classifiers (cached)
    sheet_rows: int = 8

    def validate(self, prefix: str = "eval") -> None:
        for k in ("n", "classifier_steps", "sheet_rows"):
            positive_int(f"{prefix}.{k}", getattr(self, k))


def _trainer() -> TrainerConfig:
    return TrainerConfig(max_steps=800, batch_size=16, log_every=100, checkpoint_every=500,
                         progress=False, tensorboard=False)


def _adam() -> OptimConfig:
    return OptimConfig(name="adamw", lr=2e-4, betas=(0.5, 0.999), weight_decay=0.0)


@dataclass
class TGANCConfig:
    name: str = "video_tganc"
    family: str = "tganc"
    data: TGANCDataConfig = field(default_factory=TGANCDataConfig)
    model: TGANCModelConfig = field(default_factory=TGANCModelConfig)
    gan: TGANCLossConfig = field(default_factory=TGANCLossConfig)
    trainer: TrainerConfig = field(default_factory=_trainer)
    optim_g: OptimConfig = field(default_factory=_adam)
    optim_d: OptimConfig = field(default_factory=_adam)
    schedule: ScheduleConfig = field(default_factory=lambda: ScheduleConfig(name="constant"))
    eval: TGANCEvalConfig = field(default_factory=TGANCEvalConfig)

    def validate(self, prefix: str = "") -> None:
        check(self.family == "tganc", "family", self.family, "must be 'tganc' for this config")


def load_tganc_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()
                      ) -> TGANCConfig:
    """The validated config (unknown keys refused by name)."""
    return load_config(path, TGANCConfig, overrides)
