"""ParGANDA's canvas detector (issue 24): detect digits on 64×64 canvases, trained on synthetic pools.

A canvas (:func:`fmlab.data.synthetic.canvas.render_canvas`) pastes 1–3 digits of a pool at
random positions and scales with exact boxes and labels. Training canvases use a pool of raw
font digits, the same digits translated to the MNIST style, or real MNIST train digits (upper
bound); the test canvases paste MNIST **test** digits. Only the pool differs between arms: the
layouts of raw and translated canvases are identical (same labels, same seed). The canvas
source tints each object with a random colour; the detector sees the max over RGB (≈ the
object's alpha, every palette colour has a channel ≥ 230), i.e. a grey canvas.
``benchmarks/parganda_detect_runs.py`` runs the comparison.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fmlab.detect import CenterNetObjective, TinyCenterNet, decode
from fmlab.metrics.detection import detection_map


def grey_canvases(pool_x: np.ndarray, pool_y: np.ndarray, n: int, seed: int, size: int = 64,
                  max_objects: int = 3) -> dict[str, np.ndarray]:
    """``n`` canvases over a uint8 (N, 28, 28) pool: ``images`` uint8 (n, 1, S, S), ``boxes``
    (n, K, 4) xyxy pixels, ``labels`` (n, K) (``-1`` padding)."""
    from fmlab.data.synthetic.canvas import render_canvas

    out = render_canvas(pool_x, pool_y, np.arange(n), seed=seed, size=size, max_objects=max_objects)
    return {"images": out["images"].max(-1)[:, None], "boxes": out["boxes"], "labels": out["labels"]}


@dataclass
class DetectorRecipe:
    """How every detector of the comparison is trained (the same for all pools)."""

    steps: int = 300
    batch_size: int = 32
    lr: float = 2e-3
    width: int = 48


def _to_float(batch: dict[str, torch.Tensor], gen: torch.Generator) -> dict[str, torch.Tensor]:
    return {**batch, "images": batch["images"].float().div(255.0)}


def train_detector(canvases: dict[str, np.ndarray], seed: int, recipe: DetectorRecipe | None = None
                   ) -> TinyCenterNet:
    """Train :class:`TinyCenterNet` on :func:`grey_canvases` output with the engine (seeded
    batches and init; no run directory)."""
    from fmlab.engine import OptimConfig, TensorSource, Trainer, TrainerConfig
    from fmlab.engine.data import mix_seed

    r = recipe or DetectorRecipe()
    torch.default_generator.manual_seed(mix_seed(seed, -1))
    net = TinyCenterNet(num_classes=10, width=r.width)
    src = TensorSource(canvases["images"], boxes=canvases["boxes"], classes=canvases["labels"])
    cfg = TrainerConfig(max_steps=r.steps, batch_size=r.batch_size, seed=seed, device="cpu",
                        progress=False, tensorboard=False, log_every=max(1, r.steps // 5))
    Trainer(CenterNetObjective(net), src, cfg, OptimConfig(name="adamw", lr=r.lr, weight_decay=0.0),
            run_dir=None, transform=_to_float).fit()
    return net.eval()


@torch.no_grad()
def canvas_map(net: TinyCenterNet, canvases: dict[str, np.ndarray], top_k: int = 10,
               batch_size: int = 250) -> tuple[np.ndarray, float]:
    """Per-class AP and mAP@0.5 of ``net`` on :func:`grey_canvases` output."""
    x = torch.from_numpy(canvases["images"]).float().div(255.0)
    dets = []
    for i in range(0, len(x), batch_size):
        boxes, scores, labels = decode(net(x[i:i + batch_size]), k=top_k)
        dets += list(zip(boxes.numpy(), scores.numpy(), labels.numpy()))
    gts = [(b[lab >= 0], lab[lab >= 0]) for b, lab in zip(canvases["boxes"], canvases["labels"])]
    return detection_map(dets, gts, num_classes=10, iou=0.5)
