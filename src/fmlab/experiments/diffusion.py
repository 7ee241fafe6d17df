"""``fmlab diffusion train | transfer``: a :class:`DiffusionObjective` run by the engine's Trainer.

This module only composes: data (:func:`load_class_data`), the UNet (dense or KIND layers, or a
transfer net from :mod:`fmlab.experiments.diffusion_transfer`), the objective, and
:class:`fmlab.engine.Trainer`, which owns the loop, per-step seeding, checkpoints and logs. At the
end it exports ``model.safetensors`` + ``model.json`` (a LoRA run is merged into plain dense
weights first) and a sample grid ``samples.png`` (one class per column).

Exact resume: t, ε and the label drop of step s come from the global RNG the engine re-seeds
from (seed, s); the nets' initial weights are a function of ``trainer.seed``; so ``train to 10 +
resume to 20`` equals ``train to 20`` bit for bit on CPU.

Run directory::

    config.yaml  metrics.jsonl  checkpoints/  model.safetensors  model.json  samples.png
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import fmlab.peft as fp
from fmlab.diffusion.objective import DiffusionObjective
from fmlab.diffusion.schedule import NoiseSchedule
from fmlab.diffusion.unet import LayerFactory, UNet
from fmlab.engine import checkpoint as ckpt
from fmlab.engine.data import mix_seed
from fmlab.engine.trainer import Trainer
from fmlab.errors import ConfigError
from fmlab.experiments.diffusion_config import DiffusionConfig, load_diffusion_config
from fmlab.experiments.diffusion_io import load_class_data, save_model, write_samples

__all__ = ["DiffusionConfig", "DiffusionRunResult", "load_diffusion_config", "run_diffusion"]


@dataclass
class DiffusionRunResult:
    """What :func:`run_diffusion` returns (the CLI prints it)."""

    run_dir: Path
    step: int
    max_steps: int
    resumed_from: int | None
    train_cpu_s: float
    info: dict[str, Any]
    final_loss: float | None


def _build(cfg: DiffusionConfig, k: int) -> tuple[UNet, dict[str, Any]]:
    """The net to train and its record: a fresh UNet (``transfer.method: none``) or a transfer net."""
    torch.default_generator.manual_seed(mix_seed(cfg.trainer.seed, -1))
    if cfg.transfer.method == "none":
        m = cfg.model
        net = UNet(LayerFactory(m.layers, m.learngenes, m.tailors, k), ch=m.ch)
        arch = {"layers": m.layers, "ch": m.ch, "learngenes": m.learngenes,
                "tailors": m.tailors, "schedule": cfg.diffusion.schedule,
                "steps": cfg.diffusion.steps}
        info = {"method": "none", "trainable": fp.trainable_parameters(net), "arch": arch,
                "total": sum(p.numel() for p in net.parameters())}
        return net, info
    from fmlab.experiments.diffusion_transfer import build_transfer_net

    net, info = build_transfer_net(cfg, k)
    arch = info["arch"]
    for key in ("schedule", "steps"):
        if getattr(cfg.diffusion, key) != arch[key]:
            raise ConfigError(f"diffusion.{key}: {getattr(cfg.diffusion, key)!r} differs from the "
                              f"source run's {arch[key]!r}; a transfer keeps the source's process")
    return net, info


def run_diffusion(cfg: DiffusionConfig, run_dir: str | os.PathLike,
                  resume: bool = False) -> DiffusionRunResult:
    """Train (integrate) or transfer (divert) as ``cfg`` says, into ``run_dir``.

    Args:
        cfg: the experiment (``transfer.method`` none: train from ``model``; else a transfer).
        run_dir: the run directory.
        resume: continue the run in ``run_dir`` from its latest checkpoint.

    Returns:
        The :class:`DiffusionRunResult`.
    """
    run_dir = Path(run_dir)
    if not resume and ckpt.latest_checkpoint(run_dir) is not None:
        raise ConfigError(f"{run_dir} already holds a run; pass --resume {run_dir} to continue "
                          "it, or choose a new --out")
    data = load_class_data(cfg.data)
    k = len(cfg.data.classes)
    if len(data) < cfg.trainer.batch_size:
        raise ConfigError(f"trainer.batch_size: {cfg.trainer.batch_size} is larger than the "
                          f"{len(data)} training images")
    net, info = _build(cfg, k)
    d = cfg.diffusion
    objective = DiffusionObjective(net, NoiseSchedule(d.schedule, d.steps), d.p_uncond)
    run_dir.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(objective, data, cfg.trainer, cfg.optim, cfg.schedule, run_dir=run_dir,
                      config=cfg)
    cpu0 = time.process_time()
    res = trainer.fit(resume=run_dir if resume else None)
    cpu = time.process_time() - cpu0
    if cfg.transfer.method == "lora":
        fp.merge(net)
    arch = dict(info["arch"], layers="dense" if cfg.transfer.method == "lora" else
                info["arch"]["layers"])
    meta = {**arch, "classes": list(cfg.data.classes), "class_names": data.class_names,
            "step": res.step, "name": cfg.name,
            **{k2: v for k2, v in info.items() if k2 != "arch"}}
    save_model(net, run_dir, meta)
    s = cfg.samples
    write_samples(net, meta, s.n, run_dir / "samples.png", sampler=s.sampler, steps=s.steps,
                  guidance=s.guidance, seed=s.seed)
    last = res.history[-1]["loss"] if res.history else None
    return DiffusionRunResult(run_dir, res.step, res.max_steps, res.resumed_from, cpu, info, last)
