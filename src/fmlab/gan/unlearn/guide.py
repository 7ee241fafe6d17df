"""The training-time classifier ("guide") of Adapt-then-Unlearn, kept apart from the evaluator.

The metrics score the unlearnt generator with a held-out classifier (``lenet5_mnist``). If
training used that same network to pick negatives, anchor positives or choose the stopping step,
the evaluation would grade the method with its own tool. So every choice made while training is
made by a small CNN trained in the run on labelled *training* images (MNIST train), with a
fixed seed: it labels G's latents, supplies the differentiable "not the target" push on the
negatives, and gives the features of the validation FID. It takes G's own [-1, 1] output.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from fmlab.errors import ConfigError, DataError


class GuideNet(nn.Module):
    """Two stride-2 convolutions, a 4×4 average pool and an MLP head: small enough to train in
    seconds on one CPU thread, convolutional so that it judges digits roughly as LeNet does."""

    def __init__(self, channels: int = 1, num_classes: int = 10, width: int = 16,
                 feat_dim: int = 64) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 5, stride=2, padding=2), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 5, stride=2, padding=2), nn.ReLU(),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(),
            nn.Linear(2 * width * 16, feat_dim), nn.ReLU())
        self.head = nn.Linear(feat_dim, num_classes)
        self.num_classes = num_classes

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, feat_dim) features of images in [-1, 1] (the validation FID's space)."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, num_classes) logits of images in [-1, 1]."""
        return self.head(self.body(x))



@dataclass
class GuideConfig:
    """How the guide is trained: Adam at ``lr`` for ``steps`` batches of ``batch_size``."""

    steps: int = 1500
    batch_size: int = 128
    lr: float = 2e-3
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ConfigError(f"guide: steps and batch_size must be >= 1, got {self.steps}, "
                              f"{self.batch_size}")
        if not self.lr > 0:
            raise ConfigError(f"guide: lr must be > 0, got {self.lr}")


def train_guide(images: torch.Tensor, labels: np.ndarray, cfg: GuideConfig) -> GuideNet:
    """Train a :class:`GuideNet` on float (N, C, H, W) images in [-1, 1] with the engine.

    Same ``cfg.seed`` → same weights on CPU; the caller's global RNG state is left as it was.

    Raises:
        DataError: images and labels of different lengths, or fewer than two classes.
    """
    from fmlab.engine.config import OptimConfig, ScheduleConfig, TrainerConfig
    from fmlab.engine.data import TensorSource
    from fmlab.engine.distributed import DistInfo
    from fmlab.engine.objectives import ClassificationObjective
    from fmlab.engine.trainer import Trainer

    labels = np.asarray(labels, dtype=np.int64)
    if images.dim() != 4 or len(images) != len(labels):
        raise DataError(f"guide: need (N, C, H, W) images with one label each, got "
                        f"{tuple(images.shape)} and {len(labels)} labels")
    k = int(labels.max()) + 1 if len(labels) else 0
    if k < 2:
        raise DataError("guide: the labelled images hold fewer than two classes")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        net = GuideNet(images.shape[1], k)
        tcfg = TrainerConfig(max_steps=cfg.steps, batch_size=cfg.batch_size, seed=cfg.seed,
                             log_every=cfg.steps, progress=False, tensorboard=False, device="cpu")
        Trainer(ClassificationObjective(net), TensorSource(images, labels), tcfg,
                OptimConfig(name="adamw", lr=cfg.lr),
                ScheduleConfig(name="constant"), run_dir=None, dist=DistInfo()).fit()
    return net.eval().requires_grad_(False)


def guide_from_split(source: str, data_root: str | None, cfg: GuideConfig,
                     cache: bool = True) -> tuple[GuideNet, float]:
    """Train the guide on ``SOURCE:SPLIT`` (e.g. ``mnist:train``); returns (net, accuracy on
    the first 5,000 of its images, a sanity check written to the report).

    The weights are cached as safetensors under ``$FMLAB_CACHE/unlearn_guide`` keyed by the
    split's content hash and ``cfg`` (training is seeded, so a cached net is the one a fresh
    run would train).
    """
    from safetensors.torch import load_file, save_file

    from fmlab.experiments.gan_eval import open_reference
    from fmlab.gan.prep import to_gan_input
    from fmlab.utils.io import atomic_path, cache_dir, sha256_json

    split = open_reference(source, data_root)
    if split.labels is None:
        raise DataError(f"guide data {source}: needs labels")
    x = to_gan_input(split.decode(np.arange(len(split))))
    y = np.asarray(split.labels)
    key = sha256_json({"source": source, "hash": getattr(split, "content_hash", None),
                     "cfg": asdict(cfg), "shape": list(x.shape), "v": 1})[:16]
    path = cache_dir() / "unlearn_guide" / f"{key}.safetensors"
    if cache and path.is_file():
        net = GuideNet(x.shape[1], int(y.max()) + 1)
        net.load_state_dict(load_file(str(path)))
        net.eval().requires_grad_(False)
    else:
        net = train_guide(x, y, cfg)
        if cache:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp))
    with torch.no_grad():
        acc = float((net(x[:5000]).argmax(1).numpy() == y[:5000]).mean())
    return net, acc
