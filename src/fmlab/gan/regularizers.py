"""Discriminator regularisers: R1, WGAN-GP, consistency (CR / bCR) and LeCam.

Penalties are returned *before* their λ weight (except where the formula fixes it) so that the step
function owns every weight in one place. AdaptiveMix lives in :mod:`fmlab.gan.adaptivemix`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from fmlab.gan.nets.base import DOutput


def r1_penalty(real_logits: torch.Tensor, real_images: torch.Tensor) -> torch.Tensor:
    """½ E‖∇ₓ D(x)‖² over the real batch (StudioGAN's non-StyleGAN R1; multiply by r1_lambda).

    ``real_images`` must have ``requires_grad`` set before D ran on them; the graph is kept so the
    penalty itself can be back-propagated.
    """
    (grad,) = torch.autograd.grad(real_logits.sum(), real_images, create_graph=True)
    return 0.5 * grad.pow(2).flatten(1).sum(1).mean()


def gradient_penalty(D: Callable[..., DOutput], real: torch.Tensor, fake: torch.Tensor,
                     y: torch.Tensor | None = None,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """WGAN-GP's E(‖∇ D(x̂)‖₂ − 1)² at x̂ = αx + (1−α)G(z), α ~ U(0,1) per sample (times λ=10).

    Labels ``y`` (the real ones, as in StudioGAN) go to a conditional D.
    """
    alpha = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), generator=generator)
    alpha = alpha.to(real.device, real.dtype)
    x_hat = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    logits = D(x_hat, y).logits
    (grad,) = torch.autograd.grad(logits.sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(2, dim=1) - 1.0).pow(2).mean()


# ------------------------------------------------------------------------------ consistency


def cr_augment(x: torch.Tensor, generator: torch.Generator | None = None,
               ratio: float = 0.125) -> torch.Tensor:
    """CR's T: horizontal flip with p = ½ and an integer translation of up to ⌊H·ratio+½⌋ pixels
    per axis with reflect padding, drawn per sample (not differentiated: its output is a target)."""
    b, _, h, w = x.shape
    flip = torch.rand(b, generator=generator) < 0.5
    x = torch.where(flip.to(x.device)[:, None, None, None], x.flip(3), x)
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sh, sh + 1, (b,), generator=generator).to(x.device)
    dx = torch.randint(-sw, sw + 1, (b,), generator=generator).to(x.device)
    padded = F.pad(x, [sw, sw, sh, sh], mode="reflect")
    rows = (torch.arange(h, device=x.device)[None, :] + dy[:, None] + sh)  # (B, H)
    cols = (torch.arange(w, device=x.device)[None, :] + dx[:, None] + sw)  # (B, W)
    bidx = torch.arange(b, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[bidx, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous()


def consistency_loss(out: DOutput, out_aug: DOutput) -> torch.Tensor:
    """MSE(D(x), D(T(x))) on the logits, plus MSE on the class logits when D has a classifier
    head (CR; bCR is the same term on fakes). Multiply by λ_cr (10)."""
    loss = F.mse_loss(out.logits, out_aug.logits)
    if out.cls_logits is not None and out_aug.cls_logits is not None:
        loss = loss + F.mse_loss(out.cls_logits, out_aug.cls_logits)
    return loss


# ------------------------------------------------------------------------------------ LeCam


class LeCamEMA:
    """EMAs of D's mean real and fake logits (decay 0.99). Before ``start_iter`` the decay is 0,
    so the anchors simply track the current batch (StudioGAN / lecam-gan behaviour)."""

    def __init__(self, decay: float = 0.99, start_iter: int = 1000) -> None:
        self.decay = float(decay)
        self.start_iter = int(start_iter)
        self.real: float = 0.0
        self.fake: float = 0.0

    def update(self, real_logits: torch.Tensor, fake_logits: torch.Tensor, step: int) -> None:
        d = self.decay if step >= self.start_iter else 0.0
        self.real = d * self.real + (1 - d) * float(real_logits.detach().mean())
        self.fake = d * self.fake + (1 - d) * float(fake_logits.detach().mean())

    def state_dict(self) -> dict[str, float]:
        return {"real": self.real, "fake": self.fake}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.real, self.fake = float(state["real"]), float(state["fake"])


def lecam_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor,
               ema: LeCamEMA) -> torch.Tensor:
    """E relu(s_r − ema_fake)² + E relu(ema_real − s_f)² (multiply by λ = 0.3)."""
    return (F.relu(real_logits - ema.fake).pow(2).mean()
            + F.relu(ema.real - fake_logits).pow(2).mean())
