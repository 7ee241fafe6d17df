"""ParGANDA on digits (issue 24): does translating synthetic training data to the real style help?

Steps (each a small function; ``benchmarks/parganda_runs.py`` runs them for several seeds):

1. :func:`render_npz` — synthetic digits with exact labels and boxes (``fontdigits`` source) to
   an npz (``x``, ``y``, ``boxes``);
2. ``fmlab translate train`` (fonts → MNIST, unpaired) and ``fmlab translate apply`` on that npz;
3. :func:`train_classifier` — a small CNN trained on one labelled set only (raw synthetic,
   translated synthetic, or real MNIST labels: the upper bound), :func:`accuracy` on MNIST test;
4. :func:`label_preservation` — the held-out LeNet-5 (``lenet5_mnist``, 99.1 % on MNIST test)
   labels the translated images; the rate at which it returns the rendered class measures
   whether translation kept the class (it is never used for training).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fmlab.utils.io import atomic_write


def render_npz(spec: str, split: str, out: str | os.PathLike, data_root: str | None = None) -> int:
    """Render every sample of ``spec:split`` (a synthetic source) into ``out`` (x, y, boxes)."""
    from fmlab.data import open_source

    s = open_source(spec, data_root).split(split)
    parts = [s.render(np.arange(i, min(i + 1000, len(s)))) for i in range(0, len(s), 1000)]
    x = np.concatenate([p["images"] for p in parts])
    y = np.concatenate([p["label"] for p in parts]).astype(np.int64)
    boxes = np.concatenate([p["boxes"] for p in parts]).astype(np.float32)
    with atomic_write(out, "wb") as f:
        np.savez_compressed(f, x=x, y=y, boxes=boxes)
    return len(x)


class SmallCNN(nn.Module):
    """conv32-pool-conv64-pool-fc128-fc10 on 28×28 grey: ~99 % on MNIST when trained on it."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(True), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(True), nn.MaxPool2d(2))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(True),
                                  nn.Linear(128, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _prep(x: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(x)).float().div(255.0)
    return t.unsqueeze(1) if t.dim() == 3 else t.permute(0, 3, 1, 2).mean(1, keepdim=True)


@dataclass
class ClassifierRecipe:
    """How every classifier of the comparison is trained (the same for all training sets)."""

    steps: int = 600
    batch_size: int = 64
    lr: float = 1e-3
    max_shift: int = 2   # random translation by up to this many pixels (both axes)



def _shift(max_shift: int):  # noqa: ANN202 - the engine's transform signature
    """uint8 (B, H, W) → float (B, 1, H, W) in [0, 1], rolled by a seeded shift of ≤ max_shift px."""
    def transform(batch: dict[str, torch.Tensor], gen: torch.Generator) -> dict[str, torch.Tensor]:
        x = batch["images"].float().div(255.0).unsqueeze(1)
        if max_shift:
            dx, dy = torch.randint(-max_shift, max_shift + 1, (2,), generator=gen).tolist()
            x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
        return {**batch, "images": x}

    return transform


def train_classifier(x: np.ndarray, y: np.ndarray, seed: int,
                     recipe: ClassifierRecipe | None = None) -> SmallCNN:
    """Train :class:`SmallCNN` on uint8 images ``x`` (N, 28, 28) and labels ``y`` with the engine
    (seeded batches and init; no run directory)."""
    from fmlab.engine import ClassificationObjective, OptimConfig, TensorSource, Trainer, TrainerConfig
    from fmlab.engine.data import mix_seed

    r = recipe or ClassifierRecipe()
    torch.default_generator.manual_seed(mix_seed(seed, -1))
    net = SmallCNN()
    cfg = TrainerConfig(max_steps=r.steps, batch_size=r.batch_size, seed=seed, device="cpu",
                        progress=False, tensorboard=False, log_every=r.steps)
    Trainer(ClassificationObjective(net), TensorSource(x, labels=y), cfg,
            OptimConfig(name="adamw", lr=r.lr, weight_decay=0.0), run_dir=None,
            transform=_shift(r.max_shift)).fit()
    return net.eval()


@torch.no_grad()
def predict(net: nn.Module, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """Arg-max class of each uint8 image."""
    xt = _prep(x)
    return torch.cat([net(xt[i:i + batch_size]).argmax(1) for i in range(0, len(xt), batch_size)]
                     ).numpy()


def accuracy(net: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of ``net`` on uint8 images ``x`` with labels ``y``."""
    return float((predict(net, x) == np.asarray(y)).mean())


@torch.no_grad()
def label_preservation(x: np.ndarray, y: np.ndarray, data_root: str | None = None) -> float:
    """Fraction of images the held-out ``lenet5_mnist`` classifies as their label ``y``."""
    from fmlab.experiments.gan_eval import KNOWN_EXTRACTOR_WEIGHTS
    from fmlab.data.named import data_root as root_of
    from fmlab.models import create_backbone

    bb = create_backbone("lenet5_mnist", weights=root_of(data_root) / KNOWN_EXTRACTOR_WEIGHTS["lenet5_mnist"])
    bb.eval()
    xt = F.interpolate(_prep(x), size=(32, 32), mode="bilinear", align_corners=False)
    preds = torch.cat([bb.head(bb.trunk(xt[i:i + 1000])).argmax(1) for i in range(0, len(xt), 1000)])
    return float((preds.numpy() == np.asarray(y)).mean())


def load_xy(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """``x``, ``y`` of an npz written by :func:`render_npz` or ``fmlab translate apply``."""
    from fmlab.translate.data import read_x_npz

    arrays = read_x_npz(Path(path))
    return arrays["x"], arrays["y"].astype(np.int64)
