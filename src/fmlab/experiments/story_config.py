"""Config of the story-continuation experiment (``fmlab gan train --config configs/gan/canvas_story.yaml``).

Two stages, one config: ``stage: pretrain`` trains the VQ-VAE and the text-to-image transformer on
single styled frames with full captions; ``stage: adapt`` starts from a pretrain run (``init``)
and adapts it to story continuation with ``method`` (caption-only, cross-attention + full
fine-tuning, cross-attention + prompt-tuning). ``trainer`` drives the transformer of either stage,
``vq`` the VQ-VAE of the pretrain stage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fmlab.engine.config import OptimConfig, ScheduleConfig, TrainerConfig, load_config
from fmlab.story.objective import ADAPT_METHODS
from fmlab.utils.validation import check, finite_float, non_negative_int, positive_int

__all__ = ["StoryConfig", "load_story_config"]


@dataclass
class StoryDataConfig:
    source: str = "mnist"       # grey digits of this labelled source are styled into stories
    data_root: str | None = None
    limit: int = 0              # training examples of the stage (single frames or story frames; 0: all)
    singles: int = 12000        # styled single frames with full captions (pretrain stage)
    stories: int = 3000         # training stories (adapt stage)
    frames: int = 4             # frames per story (frame 0 is the source frame)
    test_stories: int = 200     # test stories (from the test split's digits)
    encoder: str = "text:minilm"

    def validate(self, prefix: str = "data") -> None:
        non_negative_int(f"{prefix}.limit", self.limit)
        for k in ("singles", "stories", "test_stories"):
            positive_int(f"{prefix}.{k}", getattr(self, k))
        check(self.frames >= 2, f"{prefix}.frames", self.frames, "must be >= 2 (a source and a frame)")


@dataclass
class VQConfig:
    codes: int = 64
    dim: int = 32
    ch: int = 32
    beta: float = 0.25
    steps: int = 1500
    batch_size: int = 64
    lr: float = 2e-3

    def validate(self, prefix: str = "vq") -> None:
        for k in ("codes", "dim", "ch", "steps", "batch_size"):
            positive_int(f"{prefix}.{k}", getattr(self, k))
        finite_float(f"{prefix}.lr", self.lr, low=0.0, low_open=True)


@dataclass
class StoryModelConfig:
    d: int = 96
    layers: int = 3
    heads: int = 4
    prompts: int = 4

    def validate(self, prefix: str = "model") -> None:
        for k in ("d", "layers", "heads"):
            positive_int(f"{prefix}.{k}", getattr(self, k))
        non_negative_int(f"{prefix}.prompts", self.prompts)
        check(self.d % self.heads == 0, f"{prefix}.heads", self.heads, f"must divide d {self.d}")


@dataclass
class StoryEvalConfig:
    stories: int = 200          # test stories generated (frames 1..F-1 each)
    temperature: float = 1.0
    top_k: int = 0
    seed: int = 0

    def validate(self, prefix: str = "eval") -> None:
        positive_int(f"{prefix}.stories", self.stories)
        finite_float(f"{prefix}.temperature", self.temperature, low=0.0, low_open=True)
        non_negative_int(f"{prefix}.top_k", self.top_k)


def _trainer() -> TrainerConfig:
    return TrainerConfig(max_steps=2000, batch_size=32, log_every=100, checkpoint_every=500,
                         progress=False, tensorboard=False)


@dataclass
class StoryConfig:
    name: str = "canvas_story"
    family: str = "story"
    stage: str = "pretrain"     # pretrain | adapt
    init: str | None = None     # adapt: the pretrain run's folder
    method: str = "cross_prompt"  # adapt: caption_only | cross_full | cross_prompt
    data: StoryDataConfig = field(default_factory=StoryDataConfig)
    vq: VQConfig = field(default_factory=VQConfig)
    model: StoryModelConfig = field(default_factory=StoryModelConfig)
    trainer: TrainerConfig = field(default_factory=_trainer)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-3, weight_decay=0.01))
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    eval: StoryEvalConfig = field(default_factory=StoryEvalConfig)

    def validate(self, prefix: str = "") -> None:
        check(self.family == "story", "family", self.family, "must be 'story' for this config")
        check(self.stage in ("pretrain", "adapt"), "stage", self.stage, "must be pretrain or adapt")
        check(self.method in ADAPT_METHODS, "method", self.method, f"must be one of {ADAPT_METHODS}")
        check(self.stage == "pretrain" or self.init is not None, "init", self.init,
              "must name the pretrain run folder when stage is adapt")


def load_story_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()
                      ) -> StoryConfig:
    """The validated config (unknown keys refused by name)."""
    return load_config(path, StoryConfig, overrides)
