"""Configs of ``fmlab caption train`` (stages ``clip``, ``lm``, ``cgt``) and ``fmlab caption attack``.

Dataclasses read by :func:`fmlab.engine.config.load_config`: unknown keys are refused by name,
``--set key=value`` overrides after the YAML file. The ``data`` section fixes the disjoint blocks
of :func:`fmlab.caption.data.build_caption_splits`; the ``lm`` and ``cgt`` stages must use the
same ``data`` as the ``clip`` run they name (checked), so no captioner image was ever paired.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fmlab.engine.config import OptimConfig, ScheduleConfig, TrainerConfig, load_config
from fmlab.utils.validation import check, finite_float, non_negative_int, positive_int

__all__ = ["CaptionAttackConfig", "CaptionDataConfig", "CaptionTrainConfig", "load_caption_config"]

STAGES = ("clip", "lm", "cgt")


@dataclass
class CaptionDataConfig:
    source: str = "mnist"
    split_seed: int = 0  # the block permutation and template draws (keep it across seeds)
    clip_images: int = 5000  # paired images: the mini image-text model only
    train_images: int = 5000  # the captioner's images (captions never built)
    corpus_captions: int = 5000  # external corpus: captions of other images, shuffled
    lm_captions: int = 5000  # the reference LM's corpus (other images again)
    test_images: int = 500  # first M test images, each with len(REF_TEMPLATES) references
    max_len: int = 20  # longest caption in words, EOS included
    data_root: str | None = None

    def validate(self, prefix: str = "data") -> None:
        check(bool(self.source), f"{prefix}.source", self.source, "must name a source")
        for k in ("clip_images", "train_images", "corpus_captions", "lm_captions", "test_images", "max_len"):
            positive_int(f"{prefix}.{k}", getattr(self, k))

    def sizes(self) -> dict[str, int]:
        return {"clip": self.clip_images, "images": self.train_images, "corpus": self.corpus_captions,
                "lm": self.lm_captions}


@dataclass
class ClipModelConfig:
    dim: int = 64
    width: int = 16

    def validate(self, prefix: str = "clip_model") -> None:
        positive_int(f"{prefix}.dim", self.dim)
        positive_int(f"{prefix}.width", self.width)


@dataclass
class CaptionerConfig:
    hidden: int = 128
    embed: int = 64

    def validate(self, prefix: str = "captioner") -> None:
        positive_int(f"{prefix}.hidden", self.hidden)
        positive_int(f"{prefix}.embed", self.embed)


@dataclass
class RewardConfig:
    semantic: str = "clip_cos"  # clip_cos | clip_agg (fmlab.caption.objectives.SEMANTIC_REWARDS)
    lam: float = 1.0  # r = lam * r_sem + (1 - lam) * r_nat; 1: no discriminator
    tau: float = 0.05  # CLIP-agg softmax temperature
    top_k: int = 16  # CLIP-agg: nearest corpus sentences
    warmup_steps: int = 200  # text-only warm-up steps (corpus sentence from its noised text embedding)
    warmup_noise: float = 0.05  # sigma of the Gaussian noise added to the text embedding
    disc_hidden: int = 64

    def validate(self, prefix: str = "reward") -> None:
        from fmlab.caption.objectives import SEMANTIC_REWARDS

        SEMANTIC_REWARDS.get(self.semantic)  # unknown name: an error listing the known ones
        finite_float(f"{prefix}.lam", self.lam, low=0.0, high=1.0)
        finite_float(f"{prefix}.tau", self.tau)
        check(self.tau > 0, f"{prefix}.tau", self.tau, "must be > 0")
        positive_int(f"{prefix}.top_k", self.top_k)
        non_negative_int(f"{prefix}.warmup_steps", self.warmup_steps)
        finite_float(f"{prefix}.warmup_noise", self.warmup_noise, low=0.0)
        positive_int(f"{prefix}.disc_hidden", self.disc_hidden)


@dataclass
class CaptionTrainConfig:
    """``fmlab caption train``: one of the three stages, all on the engine."""

    stage: str = "cgt"  # clip (image-text model) | lm (reference LM) | cgt (the captioner)
    clip: str = ""  # lm / cgt: run directory of a clip stage (frozen towers, vocabulary, data)
    data: CaptionDataConfig = field(default_factory=CaptionDataConfig)
    clip_model: ClipModelConfig = field(default_factory=ClipModelConfig)
    captioner: CaptionerConfig = field(default_factory=CaptionerConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(
        max_steps=600, batch_size=64, log_every=50, tensorboard=False))
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-3, weight_decay=0.0))
    optim_d: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-3, weight_decay=0.0))
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)

    def validate(self) -> None:
        check(self.stage in STAGES, "stage", self.stage, f"must be one of {', '.join(STAGES)}")
        if self.stage != "clip":
            check(bool(self.clip), "clip", self.clip, f"stage {self.stage} needs the run directory of a clip stage")


@dataclass
class GeneratorAttackConfig:
    eps: float = 0.2
    images: int = 2000  # training images (the captioner's block) G learns on
    steps: int = 300
    batch_size: int = 64
    lr: float = 1e-2
    width: int = 16

    def validate(self, prefix: str = "generator") -> None:
        finite_float(f"{prefix}.eps", self.eps, low=0.0, high=1.0)
        for k in ("images", "steps", "batch_size", "width"):
            positive_int(f"{prefix}.{k}", getattr(self, k))
        finite_float(f"{prefix}.lr", self.lr)


@dataclass
class CaptionAttackConfig:
    """``fmlab caption attack``: per-image feature / output-layer attacks, a generator, transfer."""

    victim: str = ""  # run directory of fmlab caption train (stage cgt)
    transfer: str = ""  # a second captioner's run directory ("": no transfer)
    eps: list[float] = field(default_factory=lambda: [0.05, 0.1, 0.15, 0.2, 0.3])
    images: int = 200  # attacked test images (the first ones whose target differs)
    steps: int = 40
    c: float = 0.0  # weight of the ||delta||_p penalty
    p: float = 2.0
    target_digit: int = 3  # the generator's fixed target (and shown in the picture)
    seed: int = 0  # target draw of the per-image attacks
    generator: GeneratorAttackConfig = field(default_factory=GeneratorAttackConfig)

    def validate(self) -> None:
        check(bool(self.victim), "victim", self.victim, "must name a run directory of fmlab caption train")
        check(bool(self.eps), "eps", self.eps, "must list at least one bound")
        for e in self.eps:
            finite_float("eps", e, low=0.0, high=1.0)
            check(e > 0, "eps", self.eps, "bounds must be > 0")
        positive_int("images", self.images)
        positive_int("steps", self.steps)
        finite_float("c", self.c, low=0.0)
        check(self.p >= 1, "p", self.p, "must be >= 1")
        check(0 <= self.target_digit <= 9, "target_digit", self.target_digit, "must be a digit 0-9")


def load_caption_config(path: str | Path | None, cls: type = CaptionTrainConfig, overrides=()):
    """Load a ``configs/caption/*.yaml`` file into ``cls`` with ``--set`` overrides.

    Examples:
        >>> load_caption_config(None, overrides=["clip=runs/c", "reward.lam=0.5"]).reward.lam
        0.5
    """
    return load_config(path, cls, overrides)
