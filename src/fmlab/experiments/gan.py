"""``fmlab gan train``: a :class:`~fmlab.gan.objective.GANObjective` run by the engine's Trainer.

This module only composes: it builds the data, the nets and the objective from a
:class:`GANConfig`, and hands them to :class:`fmlab.engine.Trainer` with two callbacks — the
:class:`~fmlab.engine.callbacks.CPUBudget` (``cpu_minutes``) and
:class:`~fmlab.experiments.gan_hooks.GANRunHooks` (grids, evaluations, export). The loop,
per-step seeding, optimisers and their schedules, checkpoints, logs, divergence checks
(:class:`fmlab.engine.DivergenceError`) and ``torchrun`` data parallelism are the engine's.

Exact resume: the batch of step t, and every random draw of the step (z, labels, DiffAugment,
AdaptiveMix), are functions of (seed, t) alone; G, D, EMA-G, the GAN state (step, LeCam
anchors), both optimiser states and the CPU time used are checkpointed together. So
``train to 10 + resume to 20`` equals ``train to 20`` bit for bit on CPU.

Run directory::

    config.yaml  run.json  metrics.jsonl  fmlab.db  checkpoints/  samples/step_XXXXXX.png
    generator.safetensors  generator.json          (the final EMA generator, rebuildable)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from fmlab.engine import checkpoint as ckpt
from fmlab.engine.callbacks import CPUBudget
from fmlab.engine.data import mix_seed
from fmlab.engine.trainer import Trainer
from fmlab.errors import ConfigError
from fmlab.experiments.gan_config import GANConfig, load_gan_config
from fmlab.experiments.gan_data import GANTrainData, load_train_data
from fmlab.experiments.gan_hooks import GANRunHooks
from fmlab.experiments.gan_io import build_nets
from fmlab.gan import EMA, GANStepConfig
from fmlab.gan.objective import GANObjective

__all__ = ["GANConfig", "GANRunResult", "GANTrainer", "RUN_DB", "load_gan_config", "train_gan"]

#: ``db=RUN_DB`` (the default) stores results in ``RUN_DIR/fmlab.db``; ``db=None`` stores none
RUN_DB = "<run_dir>/fmlab.db"


@dataclass
class GANRunResult:
    """What :func:`train_gan` returns (``fmlab gan train`` prints it)."""

    run_dir: Path
    step: int
    max_steps: int
    resumed_from: int | None
    train_cpu_s: float
    metrics: dict[str, Any] | None = None     # the last evaluation (flat), if any
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped_by_budget: bool = False


class GANTrainer:
    """Builds everything a run needs from a :class:`GANConfig`; :meth:`fit` trains.

    Args:
        cfg: the experiment.
        run_dir: where the run writes.
        data: the training images (default: loaded from ``cfg.data``).
        db: the results store; :data:`RUN_DB` for ``RUN_DIR/fmlab.db``, None for none.
    """

    def __init__(self, cfg: GANConfig, run_dir: str | os.PathLike,
                 data: GANTrainData | None = None, db: str | os.PathLike | None = RUN_DB) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.data = data if data is not None else load_train_data(cfg.data)
        t = cfg.trainer
        if len(self.data) < t.batch_size:
            raise ConfigError(f"trainer.batch_size: {t.batch_size} is larger than the "
                              f"{len(self.data)} training images")
        self.num_classes = self.data.num_classes if cfg.data.conditional else 0
        # initial weights are a function of trainer.seed (a resumed run overwrites them anyway)
        torch.default_generator.manual_seed(mix_seed(t.seed, -1))
        G, D, g_spec, d_spec = build_nets(cfg, self.num_classes)
        ema = EMA(G, cfg.ema.decay, cfg.ema.start_step) if cfg.ema.enabled else None
        self.objective = GANObjective(G, D, GANStepConfig(**vars(cfg.gan)), ema,
                                      cfg.data.channels, cfg.data.img_size,
                                      conditional=bool(self.num_classes))
        self.budget = CPUBudget(cfg.cpu_minutes)
        db_path = self.run_dir / "fmlab.db" if db == RUN_DB else (Path(db) if db else None)
        self.hooks = GANRunHooks(cfg, self.objective, self.data, self.run_dir, (g_spec, d_spec),
                                 self.budget, db_path)
        self.trainer = Trainer(self.objective, self.data, t, {"g": cfg.optim_g, "d": cfg.optim_d},
                               cfg.schedule, run_dir=self.run_dir,
                               callbacks=[self.budget, self.hooks], config=cfg)

    def fit(self, resume: bool = False) -> GANRunResult:
        """Train to ``max_steps`` (or the CPU budget).

        Args:
            resume: continue from the latest checkpoint in ``run_dir`` (a run without one
                starts from scratch); without it a directory that holds a run is refused.

        Returns:
            The :class:`GANRunResult`.
        """
        cfg = self.cfg
        if cfg.eval.every or cfg.eval.final:
            self.hooks.eval_context()
        if not resume and ckpt.latest_checkpoint(self.run_dir) is not None:
            raise ConfigError(f"{self.run_dir} already holds a run; pass --resume {self.run_dir} "
                              "to continue it, or choose a new --out")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        res = self.trainer.fit(resume=self.run_dir if resume else None)
        return GANRunResult(self.run_dir, res.step, res.max_steps, res.resumed_from,
                            self.budget.used_s, self.hooks.metrics, res.history,
                            res.stopped_early)


def train_gan(cfg: GANConfig, run_dir: str | os.PathLike, resume: bool = False,
              db: str | os.PathLike | None = RUN_DB) -> GANRunResult:
    """Train the GAN of ``cfg`` into ``run_dir`` (see the module docstring for the outputs).

    Args:
        cfg: the experiment.
        run_dir: the run directory.
        resume: continue the run in ``run_dir``.
        db: the results store: :data:`RUN_DB` (default) for ``RUN_DIR/fmlab.db``, a path, or
            None to store nothing (``--no-db``).

    Returns:
        The :class:`GANRunResult`.
    """
    if cfg.data.conditioning == "caption":
        from fmlab.experiments.textgan import TextGANTrainer

        return TextGANTrainer(cfg, run_dir, db=db).fit(resume=resume)
    return GANTrainer(cfg, run_dir, db=db).fit(resume=resume)
