"""The small GAN loop both stages share: D step with R1 from :mod:`fmlab.gan.step`, then a G
step whose loss is the non-saturating adversarial loss plus a parameter-space penalty (EWC in
stage 1, repulsion in stage 2, nothing for the fine-tune baseline).

Stage runs are a few hundred steps on a fixed tensor of samples, so a plain loop here is
clearer than the engine's trainer; the GAN maths (losses, R1, EMA) is the shared code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from fmlab.errors import ConfigError, DataError
from fmlab.gan.ema import EMA
from fmlab.gan.losses import get_loss
from fmlab.gan.nets.base import Discriminator, Generator
from fmlab.gan.step import GANStepConfig, d_step, frozen

Penalty = Callable[[Generator], tuple[torch.Tensor, dict[str, float]]]


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

    def __post_init__(self) -> None:
        for k in ("steps", "batch_size"):
            if int(getattr(self, k)) < 1:
                raise ConfigError(f"stage config: {k} must be >= 1, got {getattr(self, k)}")
        for k in ("lr_g", "lr_d"):
            if not getattr(self, k) > 0:
                raise ConfigError(f"stage config: {k} must be > 0, got {getattr(self, k)}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"stage config: ema_decay must lie in [0, 1), got {self.ema_decay}")
        get_loss(self.loss)
        self.betas = (float(self.betas[0]), float(self.betas[1]))

    def to_dict(self) -> dict:
        return asdict(self)


def train_stage(G: Generator, D: Discriminator, data: torch.Tensor, cfg: StageConfig,
                penalty: Penalty | None = None, seed: int = 0) -> list[dict[str, float]]:
    """Train G (and D) in place on ``data`` (float (N, C, H, W) in [-1, 1]); returns the logs.

    With ``cfg.ema_decay > 0`` the averaged weights are copied into G at the end, so the caller
    always holds the model to save. Same seed → same batches, z and numbers on CPU.
    """
    if data.dim() != 4 or data.shape[0] < 1:
        raise DataError(f"stage data must be a non-empty (N, C, H, W) tensor, got "
                        f"{tuple(data.shape)}")
    if tuple(data.shape[1:]) != tuple(G.img_shape):
        raise DataError(f"stage data images are {tuple(data.shape[1:])}, the generator makes "
                        f"{tuple(G.img_shape)}")
    gen = torch.Generator().manual_seed(int(seed))
    step_cfg = GANStepConfig(loss=cfg.loss, r1_lambda=cfg.r1_lambda)
    adv = get_loss(cfg.loss)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr_g, betas=cfg.betas)
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=cfg.betas)
    ema = EMA(G, decay=cfg.ema_decay) if cfg.ema_decay > 0 else None
    G.train()
    D.train()
    logs: list[dict[str, float]] = []
    for step in range(1, cfg.steps + 1):
        idx = torch.randint(0, data.shape[0], (cfg.batch_size,), generator=gen)
        rec = d_step(G, D, opt_d, data[idx], None, step_cfg, gen)
        opt_g.zero_grad(set_to_none=True)
        fake = G(G.sample_z(cfg.batch_size, gen), G.sample_labels(cfg.batch_size, gen))
        with frozen(D):
            loss = adv.g_loss(D(fake).logits)
            rec["g_adv"] = float(loss.detach())
            if penalty is not None:
                term, plogs = penalty(G)
                loss = loss + term
                rec.update(plogs)
            loss.backward()
        opt_g.step()
        if ema is not None:
            ema.update(G)
        rec["g_loss"] = float(loss.detach())
        if step % cfg.log_every == 0 or step == cfg.steps:
            logs.append({"step": float(step), **rec})
    if ema is not None:
        with torch.no_grad():
            for name, p in G.named_parameters():
                p.copy_(dict(ema.module.named_parameters())[name])
    G.eval()
    return logs
