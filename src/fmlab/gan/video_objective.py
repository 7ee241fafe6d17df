"""TGANs-C as an engine objective: a caption-to-video G against a video D, a frame D and
(optionally) a motion D, each matching-aware (papers.md #42).

One engine step is one update of all discriminators (summed losses, one optimiser ``"d"``) then
one update of G (``"g"``), the pattern of :class:`fmlab.gan.GANObjective`. Every D scores three
pairs: (real clip, its caption) as real, (real clip, a caption of another clip class) and
(generated clip, its caption) as fake, through :class:`~fmlab.gan.matching.MatchingAwareLoss`.

The temporal-coherence term (``coherence``):

- ``"none"``: video and frame D only (the ablation);
- ``"penalty"``: G also pays λ·‖φ(x_{t+1}) − φ(x_t)‖² on the frame D's features of its clips
  (:func:`~fmlab.gan.video.temporal_coherence_penalty`, TGANs-C-C);
- ``"motion"``: a third, matching-aware D on adjacent-frame differences
  (:class:`~fmlab.gan.video.MotionDiscriminator`, TGANs-C-A).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from fmlab.engine.config import OptimConfig
from fmlab.engine.optim import build_optimizer
from fmlab.errors import ConfigError, DataError
from fmlab.gan.matching import MatchingAwareLoss, mismatched_indices
from fmlab.gan.video import (
    FrameDiscriminator,
    MotionDiscriminator,
    VideoDiscriminator,
    VideoGenerator,
    temporal_coherence_penalty,
)

__all__ = ["COHERENCE", "TGANCObjective", "clips_to_gan"]

COHERENCE = ("none", "penalty", "motion")


def clips_to_gan(frames: torch.Tensor) -> torch.Tensor:
    """uint8 ``(B, T, H, W)`` (or ``(B, T, H, W, C)``) clips → float ``(B, T, C, H, W)`` in [-1, 1]."""
    if frames.dtype != torch.uint8 or frames.dim() not in (4, 5):
        raise DataError(f"clips must be uint8 (B, T, H, W[, C]), got {frames.dtype} "
                        f"{tuple(frames.shape)}")
    x = frames.unsqueeze(2) if frames.dim() == 4 else frames.permute(0, 1, 4, 2, 3)
    return x.float() / 127.5 - 1.0


class TGANCObjective(nn.Module):
    """G and the discriminators of TGANs-C, trained by :meth:`training_step`.

    Args:
        G: the caption-to-video generator.
        D_video: the whole-clip discriminator.
        D_frame: the per-frame discriminator.
        loss: the matching-aware loss (``mismatch=False`` drops the wrong-caption pairs).
        coherence: ``"none"``, ``"penalty"`` or ``"motion"`` (module doc).
        coherence_weight: λ of the penalty (``"penalty"``) or weight of the motion D's G loss.
        D_motion: the motion discriminator (needed, and only allowed, with ``"motion"``).
    """

    def __init__(self, G: VideoGenerator, D_video: VideoDiscriminator, D_frame: FrameDiscriminator,
                 loss: MatchingAwareLoss, coherence: str = "penalty", coherence_weight: float = 1.0,
                 D_motion: MotionDiscriminator | None = None) -> None:
        super().__init__()
        if coherence not in COHERENCE:
            raise ConfigError(f"coherence: {coherence!r} is unknown; choose from {COHERENCE}")
        if (coherence == "motion") != (D_motion is not None):
            raise ConfigError("coherence: 'motion' needs a motion discriminator (and only it does)")
        if coherence_weight < 0:
            raise ConfigError(f"coherence_weight: {coherence_weight} must be >= 0")
        self.G, self.D_video, self.D_frame, self.D_motion = G, D_video, D_frame, D_motion
        self.loss, self.coherence, self.coherence_weight = loss, coherence, float(coherence_weight)

    def forward(self, batch: Any) -> Any:
        raise TypeError("TGANCObjective is trained through training_step (two optimisers)")

    def discriminators(self) -> list[tuple[str, nn.Module, float]]:
        """(name, D, weight of its G loss) of every discriminator in use."""
        ds: list[tuple[str, nn.Module, float]] = [("video", self.D_video, 1.0),
                                                 ("frame", self.D_frame, 1.0)]
        if self.D_motion is not None:
            ds.append(("motion", self.D_motion, self.coherence_weight))
        return ds

    def configure_optimizers(self, optim: Mapping[str, OptimConfig]
                             ) -> dict[str, torch.optim.Optimizer]:
        """``{"g": G's optimiser, "d": one optimiser over every discriminator}``."""
        missing = [k for k in ("g", "d") if k not in optim]
        if missing:
            raise ConfigError(f"TGANs-C needs optim configs 'g' and 'd'; missing {missing}")
        ds = nn.ModuleList([d for _, d, _ in self.discriminators()])
        return {"g": build_optimizer(self.G, optim["g"]), "d": build_optimizer(ds, optim["d"])}

    def _d_step(self, x: torch.Tensor, e: torch.Tensor, wrong: torch.Tensor, fake: torch.Tensor,
                opt: torch.optim.Optimizer, generator: torch.Generator) -> dict[str, float]:
        logs, total = {}, torch.zeros(())
        for name, D, _ in self.discriminators():
            real_wrong = D(x, e[wrong]) if self.loss.mismatch else None
            term = self.loss.d_loss(D(x, e), real_wrong, D(fake, e), generator)
            logs[f"d_{name}"] = float(term.detach())
            total = total + term
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        logs["d_loss"] = float(total.detach())
        return logs

    def _g_step(self, fake: torch.Tensor, e: torch.Tensor, opt: torch.optim.Optimizer
                ) -> dict[str, float]:
        ds = self.discriminators()
        for _, D, _ in ds:
            D.requires_grad_(False)
        logs, total = {}, torch.zeros(())
        for name, D, w in ds:
            term = self.loss.g_loss(D(fake, e))
            logs[f"g_{name}"] = float(term.detach())
            total = total + w * term
        if self.coherence == "penalty":
            pen = temporal_coherence_penalty(self.D_frame.frame_features(fake))
            logs["g_coherence"] = float(pen.detach())
            total = total + self.coherence_weight * pen
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        for _, D, _ in ds:
            D.requires_grad_(True)
        logs["g_loss"] = float(total.detach())
        return logs

    def training_step(self, batch: dict[str, torch.Tensor],
                      optimizers: Mapping[str, torch.optim.Optimizer], step: int,
                      generator: torch.Generator) -> dict[str, float]:
        """One update of the discriminators, then one of G, on ``batch``.

        Args:
            batch: ``{"frames": uint8 (B, T, H, W) clips, "caption_emb": float (B, E),
                "caption_ids": int (B,) caption class (pairs of another class are the wrong ones)}``.
            optimizers: ``{"g", "d"}`` from :meth:`configure_optimizers`.
            step: the 0-based step (unused: the objective keeps no schedule of its own).
            generator: the step's seeded CPU generator (z and the wrong captions).
        """
        x = clips_to_gan(batch["frames"])
        e, ids = batch["caption_emb"].float(), batch["caption_ids"]
        wrong = mismatched_indices(ids, generator) if self.loss.mismatch else ids
        z = self.G.sample_z(x.shape[0], generator)
        fake = self.G(z, e)
        logs = self._d_step(x, e, wrong, fake.detach(), optimizers["d"], generator)
        logs.update(self._g_step(fake, e, optimizers["g"]))
        return logs
