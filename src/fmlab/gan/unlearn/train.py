"""One Adapt-then-Unlearn stage as an engine objective: D step with R1 and a G step whose loss
is the non-saturating adversarial loss plus a parameter-space penalty (EWC in stage 1,
repulsion in stage 2, nothing for the fine-tune baseline), both from :mod:`fmlab.gan.step`.

:func:`train_stage` runs :class:`StageObjective` with :class:`fmlab.engine.Trainer`
(``run_dir=None``: nothing is written), so the stages share the engine's seeded data order,
per-step seeding and divergence check instead of a loop of their own. Batches are drawn
without replacement within an epoch of the stage's data (the engine's order).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn

from fmlab.engine.callbacks import Callback
from fmlab.engine.config import OptimConfig, ScheduleConfig, TrainerConfig
from fmlab.engine.data import TensorSource
from fmlab.engine.distributed import DistInfo
from fmlab.engine.trainer import Trainer
from fmlab.errors import ConfigError, DataError
from fmlab.gan.diffaugment import parse_policy
from fmlab.gan.ema import EMA
from fmlab.gan.losses import get_loss
from fmlab.gan.nets.base import Discriminator, Generator
from fmlab.gan.step import GANState, GANStepConfig, Penalty, d_step, g_step


@dataclass
class StageConfig:
    """Hyper-parameters of one stage. Defaults keep the pre-trained MLP GAN stable: Adam with
    β₁ = 0.5, D slower than G (1e-3 vs 2e-4), a light R1 (0.1) and a G EMA that is what gets returned."""

    steps: int = 400
    batch_size: int = 64
    lr_g: float = 1e-3
    lr_d: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    r1_lambda: float = 0.1
    ema_decay: float = 0.99   # 0 = return the raw weights
    loss: str = "vanilla"     # the non-saturating loss of the paper
    log_every: int = 50
    diffaug: str = ""         # DiffAugment policy on reals and fakes ("" = off; GenDA augments)

    def __post_init__(self) -> None:
        for k in ("steps", "batch_size"):
            if int(getattr(self, k)) < 1:
                raise ConfigError(f"stage config: {k} must be >= 1, got {getattr(self, k)}")
        for k in ("lr_g", "lr_d"):
            v = getattr(self, k)
            if not (math.isfinite(v) and v > 0):
                raise ConfigError(f"stage config: {k} must be a finite number > 0, got {v}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"stage config: ema_decay must lie in [0, 1), got {self.ema_decay}")
        if not (math.isfinite(self.r1_lambda) and self.r1_lambda >= 0):
            raise ConfigError(f"stage config: r1_lambda must be a finite number >= 0, "
                              f"got {self.r1_lambda}")
        get_loss(self.loss)
        parse_policy(self.diffaug)
        self.betas = (float(self.betas[0]), float(self.betas[1]))

    def to_dict(self) -> dict:
        return asdict(self)

    def optim(self) -> dict[str, OptimConfig]:
        """The ``g`` / ``d`` optimiser configs (Adam: AdamW without weight decay)."""
        return {"g": OptimConfig(name="adamw", lr=self.lr_g, betas=self.betas),
                "d": OptimConfig(name="adamw", lr=self.lr_d, betas=self.betas)}


class StageObjective(nn.Module):
    """G and D of one stage; ``training_step`` = :func:`d_step` + :func:`g_step` with a penalty.

    Args:
        G: the generator (trained in place).
        D: the discriminator (trained in place).
        cfg: the stage's hyper-parameters.
        penalty: ``penalty(G) -> (term, logs)`` added to G's loss, or None.
    """

    def __init__(self, G: Generator, D: Discriminator, cfg: StageConfig,
                 penalty: Penalty | None = None) -> None:
        super().__init__()
        self.G = G
        self.D = D
        self.G_ema = EMA(G, decay=cfg.ema_decay) if cfg.ema_decay > 0 else None
        self.step_cfg = GANStepConfig(loss=cfg.loss, r1_lambda=cfg.r1_lambda,
                                      diffaug=cfg.diffaug)
        self.state = GANState(ema=self.G_ema)
        self.penalty = penalty

    def forward(self, batch: object) -> object:
        raise TypeError("StageObjective is trained through training_step, not called")

    def configure_optimizers(self, optim: Mapping[str, OptimConfig]
                             ) -> dict[str, torch.optim.Optimizer]:
        """Adam for G and D with the stage's learning rates and betas.

        Args:
            optim: ``{"g", "d"}`` configs (:meth:`StageConfig.optim`).

        Returns:
            ``{"g": ..., "d": ...}``.
        """
        return {name: torch.optim.Adam(net.parameters(), lr=optim[name].lr,
                                       betas=optim[name].betas)
                for name, net in (("g", self.G), ("d", self.D))}

    def training_step(self, batch: dict[str, torch.Tensor],
                      optimizers: Mapping[str, torch.optim.Optimizer], step: int,
                      generator: torch.Generator) -> dict[str, float]:
        """One D update (R1) then one G update with the penalty; the EMA follows G.

        Returns:
            The step's terms (``d_loss``, ``g_adv``, the penalty's logs, ``g_loss`` ...).
        """
        x = batch["images"]
        logs = d_step(self.G, self.D, optimizers["d"], x, None, self.step_cfg, generator)
        logs.update(g_step(self.G, self.D, optimizers["g"], x.shape[0], self.step_cfg,
                           generator, self.state, self.penalty))
        return logs


def train_stage(G: Generator, D: Discriminator, data: torch.Tensor, cfg: StageConfig,
                penalty: Penalty | None = None, seed: int = 0,
                callbacks: Sequence[Callback] = ()) -> list[dict[str, float]]:
    """Train G (and D) in place on ``data`` (float (N, C, H, W) in [-1, 1]); returns the logs.

    With ``cfg.ema_decay > 0`` the averaged weights are copied into G at the end, so the caller
    always holds the model to save. Same seed → same batches, z and numbers on CPU. The
    caller's global RNG state is left as it was.

    Args:
        G: the generator.
        D: the discriminator.
        data: the stage's images; fewer than ``batch_size`` are repeated to fill one batch.
        cfg: the stage's hyper-parameters.
        penalty: the G penalty, or None.
        seed: the stage's seed (data order, z, R1 noise).
        callbacks: engine callbacks (e.g. the stopping-step selection), which see
            ``trainer.objective`` (a :class:`StageObjective`).

    Returns:
        ``[{"step": float, **means of the window}]`` every ``cfg.log_every`` steps and at the end.

    Raises:
        DataError: ``data`` is not a non-empty (N, C, H, W) tensor of G's image shape.
    """
    if data.dim() != 4 or data.shape[0] < 1:
        raise DataError(f"stage data must be a non-empty (N, C, H, W) tensor, got "
                        f"{tuple(data.shape)}")
    if tuple(data.shape[1:]) != tuple(G.img_shape):
        raise DataError(f"stage data images are {tuple(data.shape[1:])}, the generator makes "
                        f"{tuple(G.img_shape)}")
    if data.shape[0] < cfg.batch_size:
        data = data.repeat(math.ceil(cfg.batch_size / data.shape[0]), 1, 1, 1)
    obj = StageObjective(G, D, cfg, penalty)
    device = next(G.parameters()).device
    tcfg = TrainerConfig(max_steps=cfg.steps, batch_size=cfg.batch_size, seed=int(seed),
                         log_every=cfg.log_every, progress=False, tensorboard=False,
                         device=str(device))
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        res = Trainer(obj, TensorSource(data), tcfg, cfg.optim(), ScheduleConfig(name="constant"),
                      run_dir=None, dist=DistInfo(), callbacks=list(callbacks)).fit()
    if obj.G_ema is not None:
        with torch.no_grad():
            ema = dict(obj.G_ema.module.named_parameters())
            for name, p in G.named_parameters():
                p.copy_(ema[name])
    G.eval()
    return [{"step": float(r["step"]), **{k: v for k, v in r["logs"].items()
                                            if not k.startswith("lr_")}}
            for r in res.history]
