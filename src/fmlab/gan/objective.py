"""A GAN as an engine objective: the engine runs the loop, :func:`fmlab.gan.gan_step` the maths.

A GAN step is two updates with two optimisers (D, then G with D frozen), so the objective uses
the engine's manual optimisation: :meth:`GANObjective.configure_optimizers` builds ``{"g", "d"}``
from the ``optim_g`` / ``optim_d`` configs (the engine adds their LR schedules, checkpoints both
states, and under ``torchrun`` averages gradients inside each ``step()``), and
:meth:`GANObjective.training_step` calls ``gan_step``. Everything a resumed run needs lives in
the module's ``state_dict``: G, D and EMA-G as parameters and buffers, the GAN state (step,
LeCam anchors) as the module's extra state.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from fmlab.engine.config import OptimConfig
from fmlab.engine.optim import build_optimizer
from fmlab.errors import ConfigError
from fmlab.gan.ema import EMA
from fmlab.gan.nets.base import Discriminator, Generator
from fmlab.gan.prep import to_gan_input
from fmlab.gan.regularizers import LeCamEMA
from fmlab.gan.step import GANState, GANStepConfig, gan_step


class GANObjective(nn.Module):
    """G, D and the EMA copy of G, trained by one :func:`gan_step` per engine step.

    Args:
        G: the generator.
        D: the discriminator.
        step_cfg: the step's losses and regularisers.
        G_ema: the generator EMA (what grids, metrics and exports use), or None.
        channels: the channels the nets take (uint8 batches are converted by
            :func:`fmlab.gan.to_gan_input`); None keeps the images' own.
        img_size: the side the images are resized to; None keeps it.
        conditional: feed the batch's ``labels`` to G and D.

    Examples:
        >>> import torch
        >>> from fmlab.engine import TensorSource, Trainer, TrainerConfig, OptimConfig
        >>> from fmlab.gan import create_discriminator, create_generator, GANStepConfig
        >>> _ = torch.manual_seed(0)
        >>> G = create_generator("mlp", z_dim=4, hidden=8, img_shape=(1, 4, 4))
        >>> D = create_discriminator("mlp", hidden=8, img_shape=(1, 4, 4))
        >>> obj = GANObjective(G, D, GANStepConfig(), channels=1, img_size=4)
        >>> src = TensorSource(torch.randint(0, 256, (16, 4, 4), dtype=torch.uint8))
        >>> cfg = TrainerConfig(max_steps=3, batch_size=8, device="cpu", progress=False,
        ...                     tensorboard=False, log_every=3)
        >>> opt = {"g": OptimConfig(lr=1e-3), "d": OptimConfig(lr=1e-3)}
        >>> res = Trainer(obj, src, cfg, opt, run_dir=None).fit()
        >>> res.step, obj.state.step, sorted(res.history[0]["logs"])[:3]
        (3, 3, ['d_adv', 'd_loss', 'g_adv'])
    """

    def __init__(self, G: Generator, D: Discriminator, step_cfg: GANStepConfig,
                 G_ema: EMA | None = None, channels: int | None = None,
                 img_size: int | None = None, conditional: bool = False) -> None:
        super().__init__()
        self.G = G
        self.D = D
        self.G_ema = G_ema
        self.step_cfg = step_cfg
        self.state = GANState(ema=G_ema)
        self.channels = channels
        self.img_size = img_size
        self.conditional = conditional

    def forward(self, batch: Any) -> Any:
        raise TypeError("GANObjective is trained through training_step (two optimisers), "
                        "not called")

    @property
    def G_eval(self) -> nn.Module:
        """The EMA generator when there is one, else G."""
        return self.G_ema.module if self.G_ema is not None else self.G

    def configure_optimizers(self, optim: Mapping[str, OptimConfig]
                             ) -> dict[str, torch.optim.Optimizer]:
        """``{"g": optimiser of G, "d": optimiser of D}`` from the ``"g"`` / ``"d"`` configs.

        Args:
            optim: the trainer's named optim configs; needs ``"g"`` and ``"d"``.

        Returns:
            The two optimisers (the engine schedules their learning rates).
        """
        missing = [k for k in ("g", "d") if k not in optim]
        if missing:
            raise ConfigError(f"a GAN needs optim configs 'g' and 'd'; missing {missing}")
        return {"g": build_optimizer(self.G, optim["g"]), "d": build_optimizer(self.D, optim["d"])}

    def training_step(self, batch: dict[str, torch.Tensor],
                      optimizers: Mapping[str, torch.optim.Optimizer], step: int,
                      generator: torch.Generator) -> dict[str, float]:
        """One D update then one G update on ``batch`` (the EMA follows G).

        Args:
            batch: ``{"images": uint8 (B, H, W[, C]) or float (B, C, H, W), "labels": ...}``.
            optimizers: ``{"g", "d"}`` from :meth:`configure_optimizers`.
            step: the 0-based index of this step.
            generator: the step's seeded CPU generator (z, labels, augmentations).

        Returns:
            The step's terms as floats (``d_loss``, ``g_loss``, ``d_adv`` ...).
        """
        x = batch["images"]
        if x.dtype == torch.uint8:
            x = to_gan_input(x, self.channels, self.img_size)
        y = batch.get("labels") if self.conditional else None
        self.state.step = step
        logs = gan_step(self.G, self.D, optimizers["g"], optimizers["d"], x, y, self.step_cfg,
                        generator, self.state)
        del logs["step"]
        return logs

    def get_extra_state(self) -> dict[str, Any]:
        """The GAN state that is not a tensor of a net: step, LeCam anchors, extras."""
        lecam = self.state.lecam
        return {"step": self.state.step,
                "lecam": lecam.state_dict() if lecam is not None else None,
                "extra": dict(self.state.extra)}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`get_extra_state` (from a checkpoint)."""
        self.state.step = int(state["step"])
        self.state.extra = dict(state.get("extra") or {})
        self.state.lecam = None
        if state.get("lecam") is not None:
            c = self.step_cfg
            self.state.lecam = LeCamEMA(c.lecam_decay, c.lecam_start)
            self.state.lecam.load_state_dict(state["lecam"])
