"""``fmlab attack universal``: train an AdvEncoder generator with the engine's Trainer.

This module only composes: the frozen backbone from the registry, the surrogate images (no
labels are read), :class:`~fmlab.attack.advencoder.AdvEncoderLoss`, and
:class:`fmlab.engine.Trainer` (loop, per-step seeding, checkpoints, resume, logs). At the end
the perturbation is exported in pixel scale [0, 1] at the backbone's input size.

Run directory::

    config.yaml  metrics.jsonl  checkpoints/
    delta.safetensors   ("delta": (C, H, W) δ with |δ| ≤ ε, or the (C, p, p) patch in [0, 1])
    delta.json          (kind, eps, patch, backbone, weights sha256, surrogate, steps, sha256)
    delta.png           (δ scaled to [0, 1] for visibility, or the patch)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fmlab.engine.config import OptimConfig, ScheduleConfig, TrainerConfig, load_config
from fmlab.errors import ConfigError
from fmlab.utils.validation import check

__all__ = ["AttackConfig", "load_attack_config", "run_universal"]


@dataclass
class AttackModelConfig:
    """The victim encoder: ``create_backbone(backbone, weights=weights)``."""

    backbone: str = "resnet20_cifar"
    weights: str | None = None  # may use ${VAR}; None: random init from trainer.seed


@dataclass
class AttackDataConfig:
    """Surrogate images: the first ``limit`` of ``split`` in a seeded order (labels unused)."""

    source: str = "cifar10"
    split: str = "train"
    data_root: str | None = None
    limit: int = 5000  # 0: all
    order_seed: int = 0

    def validate(self, prefix: str = "data") -> None:
        check(self.limit >= 0, f"{prefix}.limit", self.limit, "must be >= 0")


@dataclass
class AdvEncoderSection:
    """The attack's own keys (see :class:`~fmlab.attack.advencoder.AdvEncoderLoss`)."""

    eps: float | str = "10/255"  # ℓ∞ bound in pixel scale, "10/255" or a number in (0, 1]
    patch: float = 0.0  # > 0: patch variant with this area fraction (eps then unused)
    temperature: float = 0.2
    lambda_hf: float = 1.0  # weight of L_HFC; 0 turns the high-frequency term off
    blur_sigma: float = 1.0
    z_dim: int = 8  # channels of the fixed noise image
    width: int = 32

    def validate(self, prefix: str = "attack") -> None:
        from fmlab.attack.advencoder import parse_eps

        parse_eps(self.eps, f"{prefix}.eps")
        check(0.0 <= self.patch < 1.0, f"{prefix}.patch", self.patch, "must be in [0, 1)")
        check(self.temperature > 0, f"{prefix}.temperature", self.temperature, "must be > 0")
        check(self.lambda_hf >= 0, f"{prefix}.lambda_hf", self.lambda_hf, "must be >= 0")
        check(self.blur_sigma > 0, f"{prefix}.blur_sigma", self.blur_sigma, "must be > 0")
        check(self.z_dim >= 1 and self.width >= 1, f"{prefix}.z_dim/width",
              (self.z_dim, self.width), "must be >= 1")


@dataclass
class AttackConfig:
    """``configs/attack/advencoder.yaml``."""

    name: str = "advencoder"
    model: AttackModelConfig = field(default_factory=AttackModelConfig)
    data: AttackDataConfig = field(default_factory=AttackDataConfig)
    attack: AdvEncoderSection = field(default_factory=AdvEncoderSection)
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(
        max_steps=200, batch_size=32, log_every=20, tensorboard=False))
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-3))
    schedule: ScheduleConfig = field(default_factory=lambda: ScheduleConfig(name="constant"))


def load_attack_config(path: str | os.PathLike | None, overrides: list[str] = ()) -> AttackConfig:
    """The config file (or the defaults), then ``--set`` overrides; unknown keys are refused.

    Examples:
        >>> cfg = load_attack_config(None, ["attack.eps=8/255", "trainer.max_steps=3"])
        >>> cfg.attack.eps, cfg.trainer.max_steps
        ('8/255', 3)
    """
    cfg = load_config(path, AttackConfig, overrides)
    if cfg.trainer.max_steps < 1:
        raise ConfigError(f"trainer.max_steps: {cfg.trainer.max_steps} must be >= 1 "
                          "(the attack is sized in steps)")
    return cfg


def load_surrogate(cfg: AttackDataConfig):
    """The surrogate images as a :class:`~fmlab.engine.TensorSource` (no labels)."""
    from fmlab.data import ImageTextSplit, open_source
    from fmlab.engine.data import TensorSource

    split = open_source(cfg.source, cfg.data_root).split(cfg.split)
    images = split.images if isinstance(split, ImageTextSplit) else split
    n = len(images)
    keep = min(cfg.limit, n) if cfg.limit else n
    order = np.random.default_rng(cfg.order_seed).permutation(n)[:keep]
    return TensorSource(images.decode(np.sort(order))), images.content_hash


def build_attack(cfg: AttackConfig):
    """(objective, backbone): the frozen victim and the loss around a fresh generator."""
    from fmlab.attack.advencoder import AdvEncoderLoss, parse_eps
    from fmlab.engine.data import mix_seed
    from fmlab.models import create_backbone

    weights = os.path.expandvars(cfg.model.weights) if cfg.model.weights else None
    bb = create_backbone(cfg.model.backbone, weights=weights,
                         seed=None if weights else cfg.trainer.seed)
    a = cfg.attack
    torch.default_generator.manual_seed(mix_seed(cfg.trainer.seed, -1))  # G's init and z
    obj = AdvEncoderLoss(bb, parse_eps(a.eps, "attack.eps"), a.patch, a.temperature,
                         a.lambda_hf, a.blur_sigma, a.z_dim, a.width)
    return obj, bb


def export_perturbation(obj: Any, bb: Any, cfg: AttackConfig, run_dir: Path, step: int,
                        surrogate_hash: str) -> dict[str, Any]:
    """Write ``delta.safetensors`` + ``delta.json`` + ``delta.png``; returns the JSON."""
    from fmlab.engine.checkpoint import write_safetensors
    from fmlab.utils.io import sha256_file, write_json

    with torch.no_grad():
        delta = obj.perturbation().detach().cpu().contiguous().float()
    kind = "patch" if obj.patch else "linf"
    write_safetensors({"delta": delta}, run_dir / "delta.safetensors", {"kind": kind})
    info = {"kind": kind, "eps": None if obj.patch else obj.eps, "eps_spec": str(cfg.attack.eps),
            "patch": obj.patch or None, "shape": list(delta.shape),
            "linf": float(delta.abs().max()), "backbone": bb.name,
            "weights": cfg.model.weights, "weights_sha256": bb.weights_sha256,
            "surrogate": f"{cfg.data.source}:{cfg.data.split}", "surrogate_limit": cfg.data.limit,
            "surrogate_content_hash": surrogate_hash, "lambda_hf": cfg.attack.lambda_hf,
            "seed": cfg.trainer.seed, "step": step,
            "sha256": sha256_file(run_dir / "delta.safetensors")}
    write_json(run_dir / "delta.json", info)
    save_delta_png(delta, run_dir / "delta.png", kind)
    return info


def save_delta_png(delta: torch.Tensor, path: Path, kind: str) -> None:
    """δ rescaled from [−max|δ|, max|δ|] to [0, 1] (a patch as is), upscaled ×8, atomically."""
    from PIL import Image

    from fmlab.utils.io import atomic_write

    img = delta if kind == "patch" else (delta / (2 * delta.abs().max().clamp_min(1e-12)) + 0.5)
    arr = (img.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    pil = Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)
    pil = pil.resize((pil.width * 8, pil.height * 8), Image.NEAREST)
    with atomic_write(path, "wb") as f:
        pil.save(f, format="PNG")


def run_universal(cfg: AttackConfig, run_dir: str | os.PathLike, resume: bool = False
                  ) -> dict[str, Any]:
    """Train G to ``trainer.max_steps`` (or resume), then export δ.

    Args:
        cfg: the attack config.
        run_dir: the run directory.
        resume: continue from the latest checkpoint in ``run_dir``.

    Returns:
        The contents of ``delta.json``.
    """
    from fmlab.engine import checkpoint as ckpt
    from fmlab.engine.trainer import Trainer

    run_dir = Path(run_dir)
    if not resume and ckpt.latest_checkpoint(run_dir) is not None:
        raise ConfigError(f"{run_dir} already holds a run; pass --resume {run_dir} to continue "
                          "it, or choose a new --out")
    source, surrogate_hash = load_surrogate(cfg.data)
    if len(source) < max(2, cfg.trainer.batch_size):
        raise ConfigError(f"trainer.batch_size: {cfg.trainer.batch_size} needs at least that many "
                          f"(and >= 2) surrogate images; data.limit gives {len(source)}")
    obj, bb = build_attack(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    res = Trainer(obj, source, cfg.trainer, cfg.optim, cfg.schedule, run_dir=run_dir,
                  config=cfg).fit(resume=run_dir if resume else None)
    return export_perturbation(obj, bb, cfg, run_dir, res.step, surrogate_hash)
