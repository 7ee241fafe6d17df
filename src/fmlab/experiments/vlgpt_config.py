"""Configs of ``fmlab vlgpt``: stage 1 (image tokenizer/detokenizer) and stage 2 (the causal VL model).

Each is a dataclass read by :func:`fmlab.engine.config.load_config` (unknown keys refused by name,
``--set`` overrides). ``data`` names a labelled source captioned by ``data.templates`` (MNIST:
``"a photo of the number {}"``) or an image-text source; ``data.limit`` keeps its first M training
images (0: all).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fmlab.engine.config import OptimConfig, ScheduleConfig, TrainerConfig, load_config
from fmlab.utils.validation import check, finite_float, non_negative_int, positive_int

__all__ = ["ObjectiveConfig", "TokenizerSpec", "TokenizerTrainConfig", "VLGPTDataConfig", "VLGPTSpec",
           "VLGPTTrainConfig", "load_vlgpt_config"]

MNIST_TEMPLATES = ["a photo of the number {}", "a handwritten digit {}", "the digit {} written by hand",
                   "a picture of a {}"]
RESNET20 = "${FMLAB_DATA}/weights/resnet_cifar10/resnet20-12fca82f.th"


@dataclass
class VLGPTDataConfig:
    source: str = "mnist"
    split: str = "train"
    classes: list[str] = field(default_factory=list)  # labelled sources: caption only these
    templates: list[str] = field(default_factory=lambda: list(MNIST_TEMPLATES))
    limit: int = 5000  # first M training images (0: all)
    data_root: str | None = None

    def validate(self, prefix: str = "data") -> None:
        check(bool(self.source), f"{prefix}.source", self.source, "must name a source")
        non_negative_int(f"{prefix}.limit", self.limit)
        check(bool(self.templates), f"{prefix}.templates", self.templates, "must list at least one template")


@dataclass
class TokenizerSpec:
    tower: str = "resnet20_cifar"  # frozen image tower with a feature map (trunk.forward_map)
    tower_weights: str | None = RESNET20
    num_tokens: int = 4  # K continuous image embeddings per image
    embed_dim: int = 32
    width: int = 64  # the tokenizer transformer
    layers: int = 2
    heads: int = 4
    decoder_width: int = 64  # channels of the detokenizer's first grid

    def validate(self, prefix: str = "tokenizer") -> None:
        for k in ("num_tokens", "embed_dim", "width", "layers", "heads", "decoder_width"):
            positive_int(f"{prefix}.{k}", getattr(self, k))
        check(self.width % self.heads == 0, f"{prefix}.heads", self.heads, f"must divide width {self.width}")
        check(self.decoder_width % 4 == 0, f"{prefix}.decoder_width", self.decoder_width, "must be a multiple of 4")


@dataclass
class VLGPTSpec:
    width: int = 128
    layers: int = 3
    heads: int = 4
    max_len: int = 48  # longest sequence: 1 + K + caption words + 1

    def validate(self, prefix: str = "model") -> None:
        for k in ("width", "layers", "heads", "max_len"):
            positive_int(f"{prefix}.{k}", getattr(self, k))
        check(self.width % self.heads == 0, f"{prefix}.heads", self.heads, f"must divide width {self.width}")


@dataclass
class ObjectiveConfig:
    image_loss_weight: float = 1.0  # lambda; 0 is the paper's ablation (no image regression)
    image_loss: str = "mse"  # mse or cosine

    def validate(self, prefix: str = "objective") -> None:
        finite_float(f"{prefix}.image_loss_weight", self.image_loss_weight, low=0.0)
        check(self.image_loss in ("mse", "cosine"), f"{prefix}.image_loss", self.image_loss, "must be mse or cosine")


@dataclass
class TokenizerTrainConfig:
    """``fmlab vlgpt tokenizer``: stage 1, pixel reconstruction through K continuous embeddings."""

    tokenizer: TokenizerSpec = field(default_factory=TokenizerSpec)
    data: VLGPTDataConfig = field(default_factory=VLGPTDataConfig)
    # run the frozen tower once per training image (memory: data.limit x cells x channels floats)
    cache_cells: bool = True
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(max_steps=300, batch_size=64, log_every=50))
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=2e-3, weight_decay=0.01))
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)


@dataclass
class VLGPTTrainConfig:
    """``fmlab vlgpt train``: stage 2, the causal transformer on a frozen tokenizer's embeddings."""

    tokenizer: str = ""  # run directory of fmlab vlgpt tokenizer
    model: VLGPTSpec = field(default_factory=VLGPTSpec)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    data: VLGPTDataConfig = field(default_factory=VLGPTDataConfig)
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(max_steps=300, batch_size=64, log_every=50))
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-3, weight_decay=0.01))
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)

    def validate(self) -> None:
        check(bool(self.tokenizer), "tokenizer", self.tokenizer, "must name a run directory of fmlab vlgpt tokenizer")


def load_vlgpt_config(path: str | Path | None, cls: type, overrides=()):
    """Load a ``configs/vlgpt/*.yaml`` file into ``cls`` with ``--set`` overrides.

    Examples:
        >>> load_vlgpt_config(None, VLGPTTrainConfig, ["tokenizer=runs/t", "objective.image_loss_weight=0"]
        ...                   ).objective.image_loss_weight
        0.0
    """
    return load_config(path, cls, overrides)
