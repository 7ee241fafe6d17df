"""The one training loop. Objectives bring the maths; this file brings everything else.

Exact resume rests on three facts: (1) the data order is a function of (seed, epoch, position);
(2) the global torch RNG and the transform's generator are re-seeded at every step from
(seed, step, rank), so no random stream has to be carried across a restart; (3) weights,
optimiser state and the step counter are checkpointed together, and the schedules are pure
functions of the step.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fmlab.engine import checkpoint as ckpt
from fmlab.engine.config import (
    EngineConfig,
    OptimConfig,
    ScheduleConfig,
    TrainerConfig,
    config_to_dict,
    save_config,
    validate_config,
)
from fmlab.engine.data import (
    Transform,
    epoch_permutation,
    fetch_batch,
    micro_batch_indices,
    mix_seed,
    to_device,
)
from fmlab.engine.distributed import DistInfo, all_reduce_mean, barrier, init_distributed
from fmlab.engine.logger import MetricsLogger, truncate_metrics
from fmlab.engine.optim import build_optimizer
from fmlab.engine.schedule import LRSchedule
from fmlab.errors import ConfigError, DataError, FmlabError
from fmlab.utils.io import sha256_file, write_json


class DivergenceError(FmlabError):
    """The loss became NaN or infinite; the last checkpoint is left untouched."""


@dataclass
class FitResult:
    """What ``fit`` returns: where the run ended and what it logged in this call."""

    step: int
    epoch: int
    max_steps: int
    history: list[dict[str, Any]] = field(default_factory=list)
    run_dir: Path | None = None
    encoder_path: Path | None = None
    resumed_from: int | None = None


class Trainer:
    """Train ``objective`` on ``source`` (see :mod:`fmlab.engine` for both contracts).

    ``run_dir`` receives ``config.yaml``, ``metrics.jsonl``, ``checkpoints/`` and, at the end,
    ``encoder.safetensors`` + ``encoder.json``; with ``run_dir=None`` nothing is written.
    ``monitors`` are callables ``monitor(embed, device, where) -> dict[str, float]`` (e.g.
    :class:`fmlab.engine.monitors.EmbeddingMonitor`) run on rank 0 at the end of every
    ``monitor.every_epochs``-th epoch with the objective in eval mode. ``config`` is what gets
    saved as ``config.yaml`` (default: the three engine sections).
    """

    def __init__(self, objective: nn.Module, source: Any, cfg: TrainerConfig | None = None,
                 optim: OptimConfig | None = None, schedule: ScheduleConfig | None = None, *,
                 run_dir: str | os.PathLike | None = None, transform: Transform | None = None,
                 monitors: list[Any] | tuple[Any, ...] = (), config: Any = None,
                 dist: DistInfo | None = None) -> None:
        self.objective = objective
        self.source = source
        self.cfg = cfg or TrainerConfig()
        self.optim_cfg = optim or OptimConfig()
        self.schedule_cfg = schedule or ScheduleConfig()
        for section, prefix in ((self.cfg, "trainer"), (self.optim_cfg, "optim"),
                                (self.schedule_cfg, "schedule")):
            section.validate(prefix)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.transform = transform
        self.monitors = list(monitors)
        self.config = config
        self.dist = dist
        self.optimizer: torch.optim.Optimizer | None = None
        self.lr_schedule: LRSchedule | None = None
        self.step = 0
        self.epoch = 0
        self.position = 0

    @classmethod
    def from_config(cls, objective: nn.Module, source: Any, config: Any,
                    **kwargs: Any) -> Trainer:
        """Use ``config.trainer``, ``config.optim``, ``config.schedule`` (any nesting config)."""
        validate_config(config)
        return cls(objective, source, config.trainer, config.optim, config.schedule,
                   config=config, **kwargs)

    # ----------------------------------------------------------------- geometry

    def _geometry(self, world: int) -> tuple[int, int, int]:
        """(steps per epoch, total steps, warmup steps) for this source and config."""
        c = self.cfg
        if c.batch_size % world:
            raise ConfigError(f"trainer.batch_size: {c.batch_size} is not divisible by the "
                              f"{world} processes")
        n = len(self.source)
        per_step = c.batch_size * c.accumulate
        spe = n // per_step
        if spe == 0:
            raise ConfigError(f"trainer.batch_size: one step needs batch_size*accumulate = "
                              f"{per_step} samples but the source has only {n}")
        total = c.max_steps or c.epochs * spe
        s = self.schedule_cfg
        warmup = s.warmup_steps or round(s.warmup_epochs * spe)
        return spe, total, warmup

    def _device(self, info: DistInfo) -> torch.device:
        if self.cfg.device == "auto":
            if torch.cuda.is_available():
                return torch.device(f"cuda:{info.local_rank}")
            return torch.device("cpu")
        try:
            return torch.device(self.cfg.device)
        except RuntimeError:
            raise ConfigError(f"trainer.device: {self.cfg.device!r} is not a torch device") \
                from None

    # ----------------------------------------------------------------- the loop

    def fit(self, resume: str | os.PathLike | bool | None = None) -> FitResult:
        """Train to ``max_steps``; ``resume=RUN_DIR`` (or True: ``run_dir``) continues a run.

        Resuming a run that has no checkpoint yet starts it from scratch.
        """
        info = self.dist or init_distributed()
        rank, world = info.rank, info.world_size
        resume_dir = self._resume_dir(resume)
        if self.run_dir is None and resume_dir is not None:
            self.run_dir = resume_dir
        writes = info.is_main and self.run_dir is not None
        device = self._device(info)
        spe, max_steps, warmup = self._geometry(world)
        c = self.cfg

        obj = self.objective.to(device)
        hook = getattr(obj, "on_train_start", None)
        if callable(hook):
            hook(max_steps)
        self.optimizer = build_optimizer(obj, self.optim_cfg)
        self.lr_schedule = LRSchedule(self.optim_cfg.lr, max_steps, warmup,
                                      self.schedule_cfg.min_lr, self.schedule_cfg.name,
                                      self.optim_cfg.weight_decay,
                                      self.schedule_cfg.final_weight_decay)
        self.step, self.epoch, self.position = 0, 0, 0
        resumed_from = None
        ref = ckpt.latest_checkpoint(resume_dir) if resume_dir is not None else None
        if ref is not None:
            self._restore(ref, obj, device, spe)
            resumed_from = self.step
        if writes:
            assert self.run_dir is not None
            if resumed_from is not None:
                truncate_metrics(self.run_dir, self.step)
            save_config(self._config_to_save(), self.run_dir / "config.yaml")

        model: nn.Module = obj
        if world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            model = DDP(obj, device_ids=[device.index] if device.type == "cuda" else None,
                        find_unused_parameters=c.find_unused_parameters)
        obj.train()

        logger = MetricsLogger(self.run_dir, enabled=writes, tensorboard=c.tensorboard,
                               progress=c.progress and info.is_main, total=max_steps,
                               initial=self.step)
        gen = torch.Generator(device=device)
        before = getattr(obj, "on_before_optimizer_step", None)
        after = getattr(obj, "on_after_optimizer_step", None)
        history: list[dict[str, Any]] = []
        window = _Window()
        images_per_step = c.batch_size * c.accumulate
        autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16,
                                  enabled=c.bf16)
        perm, perm_epoch = None, -1
        last_ckpt = self.step if ref is not None else -1
        last_monitor = -1
        t_last = time.perf_counter()
        try:
            while self.step < max_steps:
                if perm_epoch != self.epoch:
                    perm, perm_epoch = epoch_permutation(len(self.source), c.seed,
                                                         self.epoch), self.epoch
                step = self.step
                _seed_global_rng(mix_seed(c.seed, step, rank), device)
                gen.manual_seed(mix_seed(c.seed, step, rank, 1))
                lr = self.lr_schedule.apply(self.optimizer, step)
                for j in range(c.accumulate):
                    k = self.position * c.accumulate + j
                    idx = micro_batch_indices(perm, k, c.batch_size, rank, world)
                    batch = to_device(fetch_batch(self.source, idx), device)
                    if self.transform is not None:
                        batch = self.transform(batch, gen)
                    sync = (model.no_sync() if world > 1 and j < c.accumulate - 1
                            else contextlib.nullcontext())
                    with sync:
                        with autocast:
                            loss, logs = model(batch)
                        if loss.ndim != 0:
                            raise ValueError(f"the objective returned a loss of shape "
                                             f"{tuple(loss.shape)}; it must be a scalar")
                        (loss / c.accumulate if c.accumulate > 1 else loss).backward()
                    window.add(loss, logs, 1.0 / c.accumulate)
                if callable(before):
                    before(step, max_steps)
                if c.grad_clip > 0:
                    norm = torch.nn.utils.clip_grad_norm_(obj.parameters(), c.grad_clip)
                    window.add_log("grad_norm", norm)
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
                if callable(after):
                    after(step, max_steps)
                window.steps += 1
                step_epoch = self.epoch
                self.step += 1
                self.position += 1
                logger.advance(1)
                if self.position == spe:
                    self.epoch += 1
                    self.position = 0
                    t_mon = time.perf_counter()
                    if self._monitor(obj, device, step_epoch, logger, history, info):
                        last_monitor = self.step
                        t_last += time.perf_counter() - t_mon  # keep images/s about training
                if self.step % c.log_every == 0 or self.step == max_steps:
                    now = time.perf_counter()
                    rec = window.record(self.step, step_epoch, lr, world,
                                        images_per_step / max(now - t_last, 1e-9) * window.steps)
                    t_last = now
                    history.append(rec)
                    logger.log(rec)
                    logger.advance(0, loss=f"{rec['loss']:.4g}",
                                   img_s=f"{rec['images_per_s']:.0f}")
                    if not math.isfinite(rec["loss"]):
                        raise DivergenceError(
                            f"loss is {rec['loss']} at step {self.step}; resume from the last "
                            f"checkpoint (step {max(last_ckpt, 0)}) with a lower optim.lr")
                    window = _Window()
                if (c.checkpoint_every and self.step % c.checkpoint_every == 0
                        and self.step < max_steps):
                    self._checkpoint(obj, spe, max_steps, info)
                    last_ckpt = self.step
            if self.monitors and last_monitor != self.step and resumed_from != max_steps:
                self._monitor(obj, device, max(self.epoch - (self.position == 0), 0), logger,
                              history, info, force=True)
            if last_ckpt != self.step:
                self._checkpoint(obj, spe, max_steps, info)
            encoder_path = self._export_encoder(obj) if writes else None
        finally:
            logger.close()
        barrier()
        return FitResult(self.step, self.epoch, max_steps, history, self.run_dir, encoder_path,
                         resumed_from)

    # ----------------------------------------------------------------- pieces

    def _resume_dir(self, resume: str | os.PathLike | bool | None) -> Path | None:
        if resume is None or resume is False:
            return None
        if resume is True:
            if self.run_dir is None:
                raise ConfigError("resume=True needs the Trainer's run_dir")
            return self.run_dir
        path = Path(resume)
        if not path.is_dir():
            raise DataError(f"{path}: cannot resume, no such run directory")
        return path

    def _config_to_save(self) -> Any:
        if self.config is not None:
            return self.config
        return EngineConfig(trainer=self.cfg, optim=self.optim_cfg, schedule=self.schedule_cfg)

    def _state(self, spe: int, max_steps: int) -> dict[str, Any]:
        assert self.optimizer is not None and self.lr_schedule is not None
        return {
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.lr_schedule.state_dict(),
            "data": {"epoch": self.epoch, "position": self.position, "seed": self.cfg.seed,
                     "num_samples": len(self.source), "steps_per_epoch": spe},
            "rng": ckpt.rng_state(),
            "max_steps": max_steps,
        }

    def _checkpoint(self, obj: nn.Module, spe: int, max_steps: int, info: DistInfo) -> None:
        if info.is_main and self.run_dir is not None:
            ckpt.save_checkpoint(self.run_dir, self.step, obj, self._state(spe, max_steps),
                                 keep_last=self.cfg.keep_last)

    def _restore(self, ref: ckpt.CheckpointRef, obj: nn.Module, device: torch.device,
                 spe: int) -> None:
        state = ckpt.load_checkpoint(ref, obj, device)
        data = state["data"]
        if data["num_samples"] != len(self.source):
            raise DataError(f"{ref.state}: the run was trained on {data['num_samples']} samples "
                            f"but the source now has {len(self.source)}")
        if data["steps_per_epoch"] != spe:
            raise ConfigError(f"{ref.state}: the run had {data['steps_per_epoch']} steps per "
                              f"epoch, this config gives {spe}; keep trainer.batch_size and "
                              f"trainer.accumulate when resuming")
        if data["seed"] != self.cfg.seed:
            raise ConfigError(f"{ref.state}: the run used trainer.seed={data['seed']}, this "
                              f"config has {self.cfg.seed}")
        assert self.optimizer is not None
        self.optimizer.load_state_dict(state["optimizer"])
        ckpt.set_rng_state(state["rng"])
        self.step = int(state["step"])
        self.epoch, self.position = int(data["epoch"]), int(data["position"])

    def _embed_fn(self, obj: nn.Module):
        fn = getattr(obj, "embed", None)
        if callable(fn):
            return fn
        enc = getattr(obj, "encoder", None)
        if enc is None:
            return None
        return enc.encode if callable(getattr(enc, "encode", None)) else enc

    def _monitor(self, obj: nn.Module, device: torch.device, epoch: int, logger: MetricsLogger,
                 history: list[dict[str, Any]], info: DistInfo, force: bool = False) -> bool:
        due = [m for m in self.monitors
               if force or (getattr(m, "every_epochs", 1) and
                            (epoch + 1) % getattr(m, "every_epochs", 1) == 0)]
        if not due:
            return False
        if info.is_main:
            embed = self._embed_fn(obj)
            if embed is None:
                warnings.warn("monitors skipped: the objective has neither embed() nor "
                              "an encoder", stacklevel=2)
                return False
            values: dict[str, float] = {}
            devices = [device] if device.type == "cuda" else []
            was_training = obj.training
            obj.eval()
            # fork_rng: a monitor must never shift the training's random streams
            with torch.random.fork_rng(devices=devices), torch.no_grad():
                for m in due:
                    values.update(m(embed, device, f"at step {self.step}"))
            obj.train(was_training)
            rec = {"step": self.step, "epoch": epoch, "monitor": values}
            history.append(rec)
            logger.log(rec)
        barrier()
        return True

    def _export_encoder(self, obj: nn.Module) -> Path | None:
        enc = getattr(obj, "encoder", None)
        if not isinstance(enc, nn.Module) or self.run_dir is None:
            return None
        path = self.run_dir / "encoder.safetensors"
        meta = {"step": str(self.step), "writer": "fmlab.engine"}
        ckpt.save_weights(enc, path, metadata=meta)
        write_json(self.run_dir / "encoder.json", {
            "name": getattr(enc, "name", None),
            "feature_dim": getattr(enc, "feature_dim", None),
            "step": self.step,
            "weights": path.name,
            "weights_sha256": sha256_file(path),
            "config": config_to_dict(self._config_to_save()),
        })
        return path


def _seed_global_rng(seed: int, device: torch.device) -> None:
    """Seed the CPU generator (and the training GPU's): what ``torch.manual_seed`` does, minus
    its lazy seeding of every other backend (CUDA/XPU/MTIA), which records a stack trace per
    call and cost ~0.4 ms per step on a CUDA build."""
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        torch.cuda.default_generators[index].manual_seed(seed)


class _Window:
    """Sums of loss and logs since the last log line, kept as tensors (no per-step host sync)."""

    def __init__(self) -> None:
        self.loss: torch.Tensor | float = 0.0
        self.logs: dict[str, torch.Tensor | float] = {}
        self.steps = 0

    def add(self, loss: torch.Tensor, logs: dict[str, Any] | None, weight: float) -> None:
        self.loss = self.loss + loss.detach().float() * weight
        for k, v in (logs or {}).items():
            self.add_log(k, v, weight)

    def add_log(self, key: str, value: Any, weight: float = 1.0) -> None:
        v = value.detach().float() if isinstance(value, torch.Tensor) else float(value)
        self.logs[key] = self.logs.get(key, 0.0) + v * weight

    def record(self, step: int, epoch: int, lr: float, world: int,
               images_per_s: float) -> dict[str, Any]:
        n = max(self.steps, 1)
        keys = sorted(self.logs)
        dev = self.loss.device if isinstance(self.loss, torch.Tensor) else None
        vals = torch.stack([torch.as_tensor(v, dtype=torch.float32, device=dev).reshape(())
                            for v in [self.loss, *(self.logs[k] for k in keys)]]) / n
        if world > 1:  # every rank reaches this line at the same step
            vals = all_reduce_mean(vals)
        out = vals.cpu().tolist()
        return {"step": step, "epoch": epoch, "lr": lr, "loss": out[0],
                "logs": dict(zip(keys, out[1:])), "images_per_s": images_per_s}
