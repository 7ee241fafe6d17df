"""Pieces of :class:`fmlab.engine.Trainer`'s fit that need no loop state: what a checkpoint
holds and how it is checked on resume, the epoch monitors, the encoder export.

They take the trainer as their first argument and read its public attributes (``cfg``,
``source``, ``optimizers``, ``lr_schedules``, ``callbacks``, ``step`` ...).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fmlab.engine import checkpoint as ckpt
from fmlab.engine.config import config_to_dict
from fmlab.engine.logger import MetricsLogger
from fmlab.engine.window import LogWindow
from fmlab.engine.distributed import (
    DistInfo,
    average_gradients_before_step,
    barrier,
    broadcast_module,
)
from fmlab.engine.optim import build_optimizer
from fmlab.engine.schedule import LRSchedule
from fmlab.errors import ConfigError, DataError
from fmlab.utils.io import sha256_file, write_json


@dataclass
class FitState:
    """What one ``Trainer.fit`` call holds besides the trainer's resumable state (step, epoch,
    position, optimisers): device, logger, generators, the log window, hooks to undo."""

    info: DistInfo
    device: torch.device
    spe: int
    max_steps: int
    model: nn.Module
    logger: MetricsLogger
    gen: torch.Generator
    cpu_gen: torch.Generator
    autocast: Any
    manual: bool
    resumed_from: int | None
    last_ckpt: int
    history: list[dict[str, Any]] = field(default_factory=list)
    window: LogWindow = field(default_factory=LogWindow)
    last_monitor: int = -1
    t_last: float = 0.0
    perm: np.ndarray | None = None
    perm_epoch: int = -1
    hooks: list[Any] = field(default_factory=list)
    before: Any = None  # the objective's on_before_optimizer_step, looked up once
    after: Any = None  # ... and on_after_optimizer_step



def checkpoint_state(trainer: Any, spe: int, max_steps: int) -> dict[str, Any]:
    """Everything but the weights: every optimiser and schedule, data position, RNG, callbacks.

    Args:
        trainer: the running :class:`~fmlab.engine.Trainer`.
        spe: steps per epoch.
        max_steps: the run's length.

    Returns:
        The dict saved as ``step-N.state.pt`` (the default path's optimiser is ``optimizer``,
        named ones are ``optimizer_<name>``; schedules likewise).
    """
    state: dict[str, Any] = {}
    for name, opt in trainer.optimizers.items():
        suffix = f"_{name}" if name else ""
        state[f"optimizer{suffix}"] = opt.state_dict()
        state[f"schedule{suffix}"] = trainer.lr_schedules[name].state_dict()
    state["data"] = {"epoch": trainer.epoch, "position": trainer.position,
                     "seed": trainer.cfg.seed, "num_samples": len(trainer.source),
                     "steps_per_epoch": spe}
    fingerprint = getattr(trainer.source, "fingerprint", None)
    if fingerprint is not None:  # a source that can tell one data selection from another
        state["data"]["fingerprint"] = fingerprint
    state["rng"] = ckpt.rng_state()
    state["max_steps"] = max_steps
    if trainer.callbacks:
        state["callbacks"] = {cb.key: cb.state_dict() for cb in trainer.callbacks}
    return state


def restore_checkpoint(trainer: Any, ref: ckpt.CheckpointRef, obj: nn.Module,
                       device: torch.device, spe: int) -> None:
    """Load ``ref`` into the objective, optimisers, callbacks and the trainer's counters.

    A source may name the config keys that choose its data as ``selection_keys`` (shown when the
    data differs) and give a ``fingerprint`` of its selection (compared with the saved one).

    Raises:
        DataError: the data differ (size or fingerprint) or the checkpoint lacks an optimiser.
        ConfigError: a different batch geometry or seed.
    """
    state = ckpt.load_checkpoint(ref, obj, device)
    data, src = state["data"], trainer.source
    hint = getattr(src, "selection_keys", None)
    keep = f"; keep {hint} when resuming" if hint else ""
    if data["num_samples"] != len(src):
        raise DataError(f"{ref.state}: the run was trained on {data['num_samples']} samples "
                        f"but the source now has {len(src)}{keep}")
    if data.get("fingerprint") != getattr(src, "fingerprint", None):
        raise DataError(f"{ref.state}: the run was trained on another selection of the data "
                        f"(fingerprint {data.get('fingerprint')!r}){keep}")
    if data["steps_per_epoch"] != spe:
        raise ConfigError(f"{ref.state}: the run had {data['steps_per_epoch']} steps per "
                          f"epoch, this config gives {spe}; keep trainer.batch_size and "
                          f"trainer.accumulate when resuming")
    if data["seed"] != trainer.cfg.seed:
        raise ConfigError(f"{ref.state}: the run used trainer.seed={data['seed']}, this "
                          f"config has {trainer.cfg.seed}")
    for name, opt in trainer.optimizers.items():
        key = f"optimizer_{name}" if name else "optimizer"
        if key not in state:
            raise DataError(f"{ref.state}: no {key!r} (a checkpoint of another objective?)")
        opt.load_state_dict(state[key])
    saved = state.get("callbacks", {})
    for cb in trainer.callbacks:
        if cb.key in saved:
            cb.load_state_dict(saved[cb.key])
    ckpt.set_rng_state(state["rng"])
    trainer.step = int(state["step"])
    trainer.epoch, trainer.position = int(data["epoch"]), int(data["position"])


def _embed_fn(obj: nn.Module) -> Any:
    fn = getattr(obj, "embed", None)
    if callable(fn):
        return fn
    enc = getattr(obj, "encoder", None)
    if enc is None:
        return None
    return enc.encode if callable(getattr(enc, "encode", None)) else enc


def run_monitors(trainer: Any, obj: nn.Module, device: torch.device, epoch: int,
                 info: DistInfo, force: bool = False) -> bool:
    """Run the monitors due at the end of ``epoch`` (all with ``force``) on rank 0, in eval
    mode and under ``fork_rng`` so they never shift the training's random streams.

    Returns:
        True when monitors were due (and ran, or were skipped for want of an encoder).
    """
    due = [m for m in trainer.monitors
           if force or (getattr(m, "every_epochs", 1) and
                        (epoch + 1) % getattr(m, "every_epochs", 1) == 0)]
    if not due:
        return False
    if info.is_main:
        embed = _embed_fn(obj)
        if embed is None:
            warnings.warn("monitors skipped: the objective has neither embed() nor "
                          "an encoder", stacklevel=3)
            return False
        values: dict[str, float] = {}
        devices = [device] if device.type == "cuda" else []
        was_training = obj.training
        obj.eval()
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            for m in due:
                values.update(m(embed, device, f"at step {trainer.step}"))
        obj.train(was_training)
        trainer.log({"step": trainer.step, "epoch": epoch, "monitor": values})
    barrier()
    return True


def export_encoder(trainer: Any, obj: nn.Module) -> Path | None:
    """``RUN_DIR/encoder.safetensors`` + ``encoder.json`` when the objective has an encoder.

    Returns:
        The weights' path, or None (no ``encoder`` module or no run directory).
    """
    enc = getattr(obj, "encoder", None)
    if not isinstance(enc, nn.Module) or trainer.run_dir is None:
        return None
    path = trainer.run_dir / "encoder.safetensors"
    meta = {"step": str(trainer.step), "writer": "fmlab.engine"}
    ckpt.save_weights(enc, path, metadata=meta)
    write_json(trainer.run_dir / "encoder.json", {
        "name": getattr(enc, "name", None),
        "feature_dim": getattr(enc, "feature_dim", None),
        "step": trainer.step,
        "weights": path.name,
        "weights_sha256": sha256_file(path),
        "config": config_to_dict(trainer._config_to_save()),
    })
    return path


def build_optimizers(trainer: Any, obj: nn.Module, manual: bool, max_steps: int,
                     warmup: int) -> None:
    """One optimiser (default path) or the objective's named ones, each with its LR schedule.

    Args:
        trainer: the trainer (``optimizers``, ``lr_schedules``, ``optimizer``, ``lr_schedule``
            are set).
        obj: the objective, on its device.
        manual: the objective has ``training_step`` (and ``configure_optimizers``).
        max_steps: the run's length (for the schedules).
        warmup: warmup steps.

    Raises:
        ConfigError: accumulation or clipping asked of a manual objective, or an optimiser
            without a config of its name.
    """
    c = trainer.cfg
    if manual:
        if c.accumulate != 1 or c.grad_clip:
            key = "trainer.accumulate" if c.accumulate != 1 else "trainer.grad_clip"
            raise ConfigError(f"{key}: {getattr(c, key.split('.')[1])!r} is not supported by "
                              "an objective that steps its own optimisers (training_step)")
        trainer.optimizers = dict(obj.configure_optimizers(trainer.optim_cfgs))
        missing = [n for n in trainer.optimizers if n not in trainer.optim_cfgs]
        if missing:
            raise ConfigError(f"configure_optimizers returned {missing} but the optim configs "
                              f"are {sorted(trainer.optim_cfgs)}")
    else:
        trainer.optimizers = {"": build_optimizer(obj, trainer.optim_cfg)}
    s = trainer.schedule_cfg
    trainer.lr_schedules = {
        name: LRSchedule(trainer.optim_cfgs[name].lr, max_steps, warmup, s.min_lr, s.name,
                         trainer.optim_cfgs[name].weight_decay, s.final_weight_decay)
        for name in trainer.optimizers}
    trainer.optimizer = next(iter(trainer.optimizers.values()))
    trainer.lr_schedule = next(iter(trainer.lr_schedules.values()))


def parallelize(trainer: Any, obj: nn.Module, manual: bool, info: DistInfo,
                device: torch.device) -> tuple[nn.Module, list[Any]]:
    """DDP for the default path; for manual optimisation, rank 0's weights everywhere and
    gradients averaged inside every ``optimizer.step()`` (no DDP: the objective never goes
    through ``forward``).

    Returns:
        (the module the default path calls, hook handles to remove at the end of the fit).
    """
    if info.world_size == 1:
        return obj, []
    if manual:
        broadcast_module(obj)
        return obj, [average_gradients_before_step(o) for o in trainer.optimizers.values()]
    from torch.nn.parallel import DistributedDataParallel as DDP

    return DDP(obj, device_ids=[device.index] if device.type == "cuda" else None,
               find_unused_parameters=trainer.cfg.find_unused_parameters), []


def resume_dir_of(trainer: Any, resume: str | os.PathLike | bool | None) -> Path | None:
    """The run directory ``resume`` names (True: the trainer's own), None for a new run."""
    if resume is None or resume is False:
        return None
    if resume is True:
        if trainer.run_dir is None:
            raise ConfigError("resume=True needs the Trainer's run_dir")
        return trainer.run_dir
    path = Path(resume)
    if not path.is_dir():
        raise DataError(f"{path}: cannot resume, no such run directory")
    return path
