"""The typed config of ``fmlab diffusion train | transfer``: one YAML per experiment, ``--set`` overrides.

The engine's sections (``trainer``, ``optim``, ``schedule``) are nested as they are, so every key
is loaded, type-converted and refused-when-unknown by :func:`fmlab.engine.load_config`. A transfer
run records its source run and method in ``transfer`` so ``--resume`` rebuilds the same model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from fmlab.diffusion.sample import SAMPLERS
from fmlab.diffusion.schedule import SCHEDULES
from fmlab.diffusion.unet import LAYER_KINDS
from fmlab.engine.config import OptimConfig, ScheduleConfig, TrainerConfig, load_config
from fmlab.utils.validation import check

TRANSFER_METHODS = ("none", "learngene", "lora", "scratch", "scratch_matched")


@dataclass
class DiffusionDataConfig:
    """A labelled 28×28 grey split, restricted to ``classes`` (relabelled 0..K−1 in that order)."""

    source: str = "mnist"          # fmlab.data.open_source spec
    split: str = "train"
    data_root: str | None = None   # default: $FMLAB_DATA
    classes: list[int] = field(default_factory=lambda: list(range(10)))
    limit: int = 0                 # keep the first M images of those classes (0: all)

    def validate(self, prefix: str = "data") -> None:
        check(self.limit >= 0, f"{prefix}.limit", self.limit, "must be >= 0")
        check(bool(self.classes) and len(set(self.classes)) == len(self.classes)
              and min(self.classes) >= 0, f"{prefix}.classes", self.classes,
              "must be a non-empty list of distinct labels >= 0")


@dataclass
class DiffusionModelConfig:
    """The UNet: dense or KIND layers, width, and KIND's components per layer."""

    layers: str = "kind"           # dense | kind
    ch: int = 32
    learngenes: int = 8            # shared components of every KIND layer
    tailors: int = 2               # components per class of every KIND layer

    def validate(self, prefix: str = "model") -> None:
        check(self.layers in LAYER_KINDS, f"{prefix}.layers", self.layers,
              f"must be one of {', '.join(LAYER_KINDS)}")
        check(self.ch >= 8 and self.ch % 8 == 0, f"{prefix}.ch", self.ch,
              "must be a multiple of 8 (GroupNorm groups)")
        check(self.learngenes >= 0, f"{prefix}.learngenes", self.learngenes, "must be >= 0")
        check(self.tailors >= 0, f"{prefix}.tailors", self.tailors, "must be >= 0")
        check(self.learngenes + self.tailors >= 1, f"{prefix}.learngenes", self.learngenes,
              "and model.tailors must not both be 0")


@dataclass
class DiffusionProcessConfig:
    """The forward process and classifier-free-guidance training."""

    schedule: str = "cosine"       # linear | cosine
    steps: int = 200               # T
    p_uncond: float = 0.1          # label → null class with this probability

    def validate(self, prefix: str = "diffusion") -> None:
        check(self.schedule in SCHEDULES, f"{prefix}.schedule", self.schedule,
              f"must be one of {', '.join(SCHEDULES)}")
        check(self.steps >= 2, f"{prefix}.steps", self.steps, "must be >= 2")
        check(0.0 <= self.p_uncond < 1.0, f"{prefix}.p_uncond", self.p_uncond, "must lie in [0, 1)")


@dataclass
class TransferConfig:
    """Diversion from an integrated run (set by ``fmlab diffusion transfer``)."""

    method: str = "none"           # none (train) | learngene | lora | scratch | scratch_matched
    source: str = ""               # the integrated run directory
    lora_r: int = 0                # 0: the rank whose trainable count is closest to learngene's
    tailor_scale: float = 0.1      # new tailors' σ = scale · min learngene σ of the layer

    def validate(self, prefix: str = "transfer") -> None:
        check(self.method in TRANSFER_METHODS, f"{prefix}.method", self.method,
              f"must be one of {', '.join(TRANSFER_METHODS)}")
        check(self.method == "none" or bool(self.source), f"{prefix}.source", self.source,
              "must name the integrated run (--from RUN)")
        check(self.lora_r >= 0, f"{prefix}.lora_r", self.lora_r, "must be >= 0")
        check(self.tailor_scale >= 0, f"{prefix}.tailor_scale", self.tailor_scale, "must be >= 0")


@dataclass
class DiffusionSampleConfig:
    """The grid written at the end of a run (``RUN_DIR/samples.png``)."""

    n: int = 50
    sampler: str = "ddim"
    steps: int = 20
    guidance: float = 0.0
    seed: int = 0

    def validate(self, prefix: str = "samples") -> None:
        check(self.n >= 1, f"{prefix}.n", self.n, "must be >= 1")
        check(self.sampler in SAMPLERS, f"{prefix}.sampler", self.sampler,
              f"must be one of {', '.join(SAMPLERS)}")
        check(self.steps >= 1, f"{prefix}.steps", self.steps, "must be >= 1")
        check(self.guidance >= 0, f"{prefix}.guidance", self.guidance, "must be >= 0")


@dataclass
class DiffusionConfig:
    """One diffusion experiment (see ``configs/diffusion/*.yaml``)."""

    name: str = "diffusion"
    data: DiffusionDataConfig = field(default_factory=DiffusionDataConfig)
    model: DiffusionModelConfig = field(default_factory=DiffusionModelConfig)
    diffusion: DiffusionProcessConfig = field(default_factory=DiffusionProcessConfig)
    transfer: TransferConfig = field(default_factory=TransferConfig)
    samples: DiffusionSampleConfig = field(default_factory=DiffusionSampleConfig)
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(batch_size=64,
                                                                         log_every=50))
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=2e-3))
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)

    def validate(self) -> None:
        check(self.trainer.max_steps >= 1, "trainer.max_steps", self.trainer.max_steps,
              "must be >= 1 (a diffusion run counts steps, not epochs)")


def load_diffusion_config(path: str | os.PathLike | None, overrides: list[str] | tuple[str, ...] = ()
                          ) -> DiffusionConfig:
    """Read a diffusion experiment YAML (or the defaults) with ``--set`` overrides, validated."""
    return load_config(path, DiffusionConfig, overrides)
