"""The one training loop. Objectives bring the maths; this file brings everything else.

Exact resume rests on three facts: (1) the data order is a function of (seed, epoch, position);
(2) the global torch RNG and the step's generators are re-seeded at every step from
(seed, step, rank), so no random stream has to be carried across a restart; (3) weights,
every optimiser's state, the callbacks' state and the step counter are checkpointed together,
and the schedules are pure functions of the step.

A fit is four pieces: :meth:`Trainer._setup` (device, optimisers, restore, logger),
one step (:meth:`Trainer._auto_step`: ``loss.backward()`` on one optimiser, or
:meth:`Trainer._manual_step`: the objective's own ``training_step``), :meth:`Trainer._after_step`
(log window, monitors, callbacks, checkpoints) and :meth:`Trainer._finish`.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fmlab.engine import checkpoint as ckpt
from fmlab.engine.callbacks import Callback
from fmlab.engine.config import (
    EngineConfig,
    OptimConfig,
    ScheduleConfig,
    TrainerConfig,
    save_config,
    validate_config,
)
from fmlab.engine.data import (
    Transform,
    epoch_permutation,
    fetch_batch,
    micro_batch_indices,
    mix_seed,
    seed_global_rng,
    to_device,
)
from fmlab.engine.device import resolve_device
from fmlab.engine.distributed import DistInfo, barrier, init_distributed
from fmlab.engine.fit_parts import (
    FitState,
    build_optimizers,
    checkpoint_state,
    export_encoder,
    parallelize,
    restore_checkpoint,
    resume_dir_of,
    run_monitors,
)
from fmlab.engine.logger import MetricsLogger, truncate_metrics
from fmlab.engine.schedule import LRSchedule
from fmlab.engine.window import LogWindow
from fmlab.errors import ConfigError, FmlabError


class DivergenceError(FmlabError):
    """The loss became NaN or infinite; the last checkpoint is left untouched."""


@dataclass
class FitResult:
    """What ``fit`` returns: where the run ended and what it logged in this call.

    ``stopped_early`` is True when a callback (e.g. :class:`~fmlab.engine.callbacks.CPUBudget`)
    ended the run before ``max_steps``.
    """

    step: int
    epoch: int
    max_steps: int
    history: list[dict[str, Any]] = field(default_factory=list)
    run_dir: Path | None = None
    encoder_path: Path | None = None
    resumed_from: int | None = None
    stopped_early: bool = False


class Trainer:
    """Train ``objective`` on ``source`` (see :mod:`fmlab.engine` for both contracts).

    Args:
        objective: the ``nn.Module`` with the maths (``loss, logs = objective(batch)``, or
            ``configure_optimizers`` + ``training_step`` for manual optimisation).
        source: the training data (``len`` + ``get_batch``).
        cfg: the ``trainer`` section (steps, batch, seed, checkpoints, device ...).
        optim: one :class:`OptimConfig`, or named ones (``{"g": ..., "d": ...}``) for an
            objective with ``configure_optimizers``; each gets its own LR schedule.
        schedule: the LR schedule shared by every optimiser.
        run_dir: receives ``config.yaml``, ``metrics.jsonl``, ``checkpoints/`` and, at the end,
            ``encoder.safetensors`` + ``encoder.json``; None writes nothing.
        transform: ``transform(batch, generator) -> batch`` on the training device.
        monitors: ``monitor(embed, device, where) -> dict[str, float]`` run on rank 0 at the end
            of every ``monitor.every_epochs``-th epoch with the objective in eval mode.
        callbacks: :class:`~fmlab.engine.callbacks.Callback` objects (evaluations, budgets).
        config: what gets saved as ``config.yaml`` (default: the three engine sections).
        dist: the process group position (default: :func:`init_distributed`).

    Examples:
        >>> import torch
        >>> from fmlab.engine import TensorSource, Trainer, TrainerConfig
        >>> class Mean(torch.nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.w = torch.nn.Parameter(torch.zeros(()))
        ...     def forward(self, batch):
        ...         return ((batch["images"].float() - self.w) ** 2).mean(), {}
        >>> src = TensorSource(torch.ones(8, 1))
        >>> cfg = TrainerConfig(max_steps=2, batch_size=4, device="cpu", progress=False,
        ...                     tensorboard=False, log_every=1)
        >>> res = Trainer(Mean(), src, cfg, run_dir=None).fit()
        >>> res.step, [round(r["loss"], 3) for r in res.history]
        (2, [1.0, 0.998])
    """

    def __init__(self, objective: nn.Module, source: Any, cfg: TrainerConfig | None = None,
                 optim: OptimConfig | Mapping[str, OptimConfig] | None = None,
                 schedule: ScheduleConfig | None = None, *,
                 run_dir: str | os.PathLike | None = None, transform: Transform | None = None,
                 monitors: list[Any] | tuple[Any, ...] = (),
                 callbacks: list[Callback] | tuple[Callback, ...] = (), config: Any = None,
                 dist: DistInfo | None = None) -> None:
        self.objective = objective
        self.source = source
        self.cfg = cfg or TrainerConfig()
        self.optim_cfgs = (dict(optim) if isinstance(optim, Mapping)
                           else {"": optim or OptimConfig()})
        self.optim_cfg = self.optim_cfgs.get("") or next(iter(self.optim_cfgs.values()))
        self.schedule_cfg = schedule or ScheduleConfig()
        self.cfg.validate("trainer")
        for name, o in self.optim_cfgs.items():
            o.validate(f"optim_{name}" if name else "optim")
        self.schedule_cfg.validate("schedule")
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.transform = transform
        self.monitors = list(monitors)
        self.callbacks = list(callbacks)
        self.config = config
        self.dist = dist
        self.dist_info: DistInfo | None = None
        self.device: torch.device | None = None
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.lr_schedules: dict[str, LRSchedule] = {}
        self.optimizer: torch.optim.Optimizer | None = None
        self.lr_schedule: LRSchedule | None = None
        self.step = 0
        self.epoch = 0
        self.position = 0
        self._fit: FitState | None = None

    @classmethod
    def from_config(cls, objective: nn.Module, source: Any, config: Any,
                    **kwargs: Any) -> Trainer:
        """Use ``config.trainer``, ``config.optim``, ``config.schedule`` (any nesting config)."""
        validate_config(config)
        return cls(objective, source, config.trainer, config.optim, config.schedule,
                   config=config, **kwargs)

    @property
    def is_main(self) -> bool:
        """True on rank 0 (the process that writes files)."""
        return self.dist_info is None or self.dist_info.is_main

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
        if 0 < total <= warmup:
            # a smoke run (--set trainer.max_steps=2) of a config with a 20-step warm-up: shorten
            # the warm-up to a tenth of the run, for every command alike; the schedule config is
            # changed in place, so the config.yaml saved next to the run records what ran
            s.warmup_steps, s.warmup_epochs = total // 10, 0.0
            warnings.warn(f"schedule.warmup_steps: the warm-up ({warmup} steps) does not fit a run "
                          f"of {total} steps; using {s.warmup_steps}", stacklevel=3)
            warmup = s.warmup_steps
        return spe, total, warmup

    # ----------------------------------------------------------------- the loop

    def fit(self, resume: str | os.PathLike | bool | None = None) -> FitResult:
        """Train to ``max_steps`` (or until a callback stops the run).

        Args:
            resume: ``RUN_DIR`` (or True: ``run_dir``) continues that run from its latest
                checkpoint; a run without a checkpoint yet starts from scratch.

        Returns:
            A :class:`FitResult` (final step, the records logged in this call ...).
        """
        f = self.begin(resume)
        stopped = ok = False
        try:
            while self.step < f.max_steps:
                if self.callbacks and any(cb.should_stop(self) for cb in self.callbacks):
                    stopped = True
                    break
                self.train_step()
            encoder_path = self._finish(f)
            ok = True
        finally:
            self.close(failed=not ok)
        barrier()
        return FitResult(self.step, self.epoch, f.max_steps, f.history, self.run_dir,
                         encoder_path, f.resumed_from, stopped)

    def begin(self, resume: str | os.PathLike | bool | None = None) -> FitState:
        """Set a fit up (device, optimisers, restore, logger) without training; :meth:`fit`
        calls it, benchmarks call it and then :meth:`train_step` (and :meth:`close`)."""
        return self._setup(resume)

    def train_step(self) -> None:
        """One step with its callbacks, log line and checkpoint (after :meth:`begin`)."""
        f = self._fit
        if f is None:
            raise RuntimeError("Trainer.train_step needs Trainer.begin first")
        for cb in self.callbacks:
            cb.on_train_step_start(self)
        lr = self._manual_step(f) if f.manual else self._auto_step(f)
        for cb in self.callbacks:
            cb.on_train_step_end(self)
        self._after_step(f, lr)

    def close(self, failed: bool = False) -> None:
        """Close the logs and undo the fit's hooks (also after an error: ``failed``)."""
        f, self._fit = self._fit, None
        if f is not None:
            f.logger.close(failed=failed)
            for h in f.hooks:
                h.remove()

    def log(self, record: dict[str, Any]) -> None:
        """Write ``record`` to ``metrics.jsonl`` (rank 0) and this fit's history; for callbacks.

        Args:
            record: a JSON-able dict with a ``step`` key.
        """
        if self._fit is None:
            raise RuntimeError("Trainer.log is only available during fit")
        self._fit.history.append(record)
        self._fit.logger.log(record)

    def _setup(self, resume: str | os.PathLike | bool | None) -> FitState:
        """Device, optimisers, restore, config.yaml, DDP and the logger of one fit."""
        info = self.dist or init_distributed()
        self.dist_info = info
        resume_dir = resume_dir_of(self, resume)
        if self.run_dir is None and resume_dir is not None:
            self.run_dir = resume_dir
        writes = info.is_main and self.run_dir is not None
        device = self.device = resolve_device(self.cfg.device, info.local_rank)
        spe, max_steps, warmup = self._geometry(info.world_size)
        obj = self.objective.to(device)
        hook = getattr(obj, "on_train_start", None)
        if callable(hook):
            hook(max_steps)
        manual = callable(getattr(obj, "training_step", None))
        build_optimizers(self, obj, manual, max_steps, warmup)
        self.step, self.epoch, self.position = 0, 0, 0
        ref = ckpt.latest_checkpoint(resume_dir) if resume_dir is not None else None
        if ref is not None:
            restore_checkpoint(self, ref, obj, device, spe)
        resumed_from = self.step if ref is not None else None
        if writes:
            assert self.run_dir is not None
            if resumed_from is not None:
                truncate_metrics(self.run_dir, self.step)
            save_config(self._config_to_save(), self.run_dir / "config.yaml")
        model, hooks = parallelize(self, obj, manual, info, device)
        obj.train()
        c = self.cfg
        logger = MetricsLogger(self.run_dir, enabled=writes, loggers=c.active_loggers(),
                               progress=c.progress and info.is_main, total=max_steps,
                               initial=self.step)
        autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=c.bf16)
        f = FitState(info, device, spe, max_steps, model, logger, torch.Generator(device=device),
                 torch.Generator(), autocast, manual, resumed_from,
                 self.step if ref is not None else -1, hooks=hooks,
                 t_last=time.perf_counter(), before=getattr(obj, "on_before_optimizer_step", None),
                 after=getattr(obj, "on_after_optimizer_step", None))
        self._fit = f
        try:
            for cb in self.callbacks:
                cb.on_fit_start(self, resumed_from)
        except BaseException:
            self.close(failed=True)
            raise
        return f

    def _batch(self, f: FitState, j: int) -> dict[str, Any]:
        """Micro-batch ``j`` of the current step, this rank's shard, on the device."""
        c = self.cfg
        if f.perm_epoch != self.epoch:
            f.perm, f.perm_epoch = epoch_permutation(len(self.source), c.seed, self.epoch), self.epoch
        idx = micro_batch_indices(f.perm, self.position * c.accumulate + j, c.batch_size,
                                  f.info.rank, f.info.world_size)
        batch = to_device(fetch_batch(self.source, idx), f.device)
        if self.transform is not None:
            batch = self.transform(batch, f.gen)
        return batch

    def _auto_step(self, f: FitState) -> float:
        """One step of the default path: accumulate ``loss.backward()``, clip, step; the lr."""
        c, step, obj = self.cfg, self.step, self.objective
        seed_global_rng(mix_seed(c.seed, step, f.info.rank), f.device)
        f.gen.manual_seed(mix_seed(c.seed, step, f.info.rank, 1))
        assert self.optimizer is not None and self.lr_schedule is not None
        lr = self.lr_schedule.apply(self.optimizer, step)
        for j in range(c.accumulate):
            batch = self._batch(f, j)
            sync = (f.model.no_sync() if f.info.world_size > 1 and j < c.accumulate - 1
                    else contextlib.nullcontext())
            with sync:
                with f.autocast:
                    loss, logs = f.model(batch)
                if loss.ndim != 0:
                    raise ValueError(f"the objective returned a loss of shape "
                                     f"{tuple(loss.shape)}; it must be a scalar")
                (loss / c.accumulate if c.accumulate > 1 else loss).backward()
            f.window.add(loss, logs, 1.0 / c.accumulate)
        if f.before is not None:
            f.before(step, f.max_steps)
        if c.grad_clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(obj.parameters(), c.grad_clip)
            f.window.add_log("grad_norm", norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if f.after is not None:
            f.after(step, f.max_steps)
        return lr

    def _manual_step(self, f: FitState) -> float:
        """One step of an objective with ``training_step``: it runs its own updates on the
        optimisers (already at this step's lr); its float logs must stay finite."""
        c, step = self.cfg, self.step
        seed = mix_seed(c.seed, step, f.info.rank, 1)
        seed_global_rng(mix_seed(c.seed, step, f.info.rank), f.device)
        f.cpu_gen.manual_seed(seed)
        if self.transform is not None:
            f.gen.manual_seed(seed)
        lrs = {f"lr_{name}": sched.apply(self.optimizers[name], step)
               for name, sched in self.lr_schedules.items()}
        batch = self._batch(f, 0)
        with f.autocast:
            logs = self.objective.training_step(batch, self.optimizers, step, f.cpu_gen)
        for k, v in logs.items():
            if not math.isfinite(v):
                raise DivergenceError(
                    f"{k}={v} at step {step + 1}; resume from the last checkpoint (step "
                    f"{max(f.last_ckpt, 0)}) with lower learning rates")
        f.window.add_floats(logs)
        f.window.add_floats(lrs)
        return next(iter(lrs.values()))

    def _after_step(self, f: FitState, lr: float) -> None:
        """Count the step, then epoch monitors, the log line, callbacks and the checkpoint."""
        c = self.cfg
        f.window.steps += 1
        step_epoch = self.epoch
        self.step += 1
        self.position += 1
        f.logger.advance(1)
        if self.position == f.spe:
            self.epoch += 1
            self.position = 0
            t_mon = time.perf_counter()
            if run_monitors(self, self.objective, f.device, step_epoch, f.info):
                f.last_monitor = self.step
                f.t_last += time.perf_counter() - t_mon  # keep images/s about training
        if self.step % c.log_every == 0 or self.step == f.max_steps:
            self._log_window(f, step_epoch, lr)
        for cb in self.callbacks:
            cb.on_after_step(self)
        if c.checkpoint_every and self.step % c.checkpoint_every == 0 and self.step < f.max_steps:
            self._checkpoint(f)

    def _log_window(self, f: FitState, epoch: int, lr: float) -> None:
        """Write the log window's means as one ``metrics.jsonl`` record and start a new one."""
        now = time.perf_counter()
        ips = self.cfg.batch_size * self.cfg.accumulate / max(now - f.t_last, 1e-9) * f.window.steps
        f.t_last = now
        if f.manual:
            rec = {"step": self.step, "epoch": epoch,
                   "logs": f.window.float_means(f.info.world_size, f.device), "images_per_s": ips}
            post = {k: f"{v:.3f}" for k, v in rec["logs"].items() if k.endswith("loss")}
        else:
            rec = f.window.record(self.step, epoch, lr, f.info.world_size, ips)
            post = {"loss": f"{rec['loss']:.4g}"}
        for cb in self.callbacks:
            cb.on_log(self, rec)
        self.log(rec)
        f.logger.advance(0, **post, img_s=f"{ips:.0f}")
        if not f.manual and not math.isfinite(rec["loss"]):
            raise DivergenceError(
                f"loss is {rec['loss']} at step {self.step}; resume from the last "
                f"checkpoint (step {max(f.last_ckpt, 0)}) with a lower optim.lr")
        f.window = LogWindow()

    def _finish(self, f: FitState) -> Path | None:
        """Final monitors and checkpoint, callbacks' ``on_fit_end``, the encoder export."""
        if self.monitors and f.last_monitor != self.step and f.resumed_from != f.max_steps:
            run_monitors(self, self.objective, f.device,
                         max(self.epoch - (self.position == 0), 0), f.info, force=True)
        if f.last_ckpt != self.step:
            self._checkpoint(f)
        for cb in self.callbacks:
            cb.on_fit_end(self)
        if f.info.is_main and self.run_dir is not None:
            return export_encoder(self, self.objective)
        return None

    # ----------------------------------------------------------------- checkpoints

    def _config_to_save(self) -> Any:
        if self.config is not None:
            return self.config
        return EngineConfig(trainer=self.cfg, optim=self.optim_cfg, schedule=self.schedule_cfg)

    def _checkpoint(self, f: FitState) -> None:
        if f.info.is_main and self.run_dir is not None:
            ckpt.save_checkpoint(self.run_dir, self.step, self.objective,
                                 checkpoint_state(self, f.spe, f.max_steps),
                                 keep_last=self.cfg.keep_last)
        f.last_ckpt = self.step
