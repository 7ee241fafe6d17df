"""Controlled caption generation through adversarial attacks (papers.md #56), on pixels in [0, 1].

The captioner reads only ``h(x)`` (its encoder's embedding), so making ``h(x + δ)`` equal
``h(x_t)`` of a target image makes it say the target's caption:

    L_feat(δ) = ‖h(x + δ) − h(x_t)‖² + c ‖δ‖_p,   ‖δ‖∞ ≤ ε,  x + δ ∈ [0, 1].

It is minimised per image by projected signed-gradient descent (:func:`feature_attack`), or
amortised by a small generator x → δ = ε·tanh(G(x)) trained for one fixed target
(:class:`AttackGenerator`, :class:`GeneratorAttackObjective`). The comparison attacks the output
layer instead: maximise log p(target caption | x + δ) (:func:`output_attack`).
:func:`project` puts δ back into the ε-ball and the pixel range after every step, so every
returned δ satisfies the bound exactly.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from fmlab.caption.models import CaptionDecoder
from fmlab.errors import ConfigError

__all__ = ["AttackGenerator", "GeneratorAttackObjective", "caption_success", "feature_attack", "feature_loss", "lp_norm",
           "output_attack", "project"]


def _check_eps(eps: float) -> None:
    if not 0.0 < eps <= 1.0:
        raise ConfigError(f"attack eps must be in (0, 1] (pixel scale), got {eps}")


def project(delta: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """δ clipped to ‖δ‖∞ ≤ ε and to x + δ ∈ [0, 1] (both hold exactly after the call)."""
    return torch.minimum(torch.maximum(delta.clamp(-eps, eps), -x), 1.0 - x)


def lp_norm(delta: torch.Tensor, p: float) -> torch.Tensor:
    """Per-image ‖δ‖_p (B,), smooth at 0 for p = 2 (the gradient of √(Σδ² + 1e-12) is defined)."""
    flat = delta.flatten(1)
    if p == 2:
        return (flat.pow(2).sum(1) + 1e-12).sqrt()
    if p == float("inf"):
        return flat.abs().amax(1)
    return flat.abs().pow(p).sum(1).pow(1.0 / p)


def feature_loss(h_adv: torch.Tensor, h_target: torch.Tensor, delta: torch.Tensor, c: float,
                 p: float) -> torch.Tensor:
    """Per-image ‖h(x+δ) − h(x_t)‖² + c‖δ‖_p, shape (B,)."""
    return (h_adv - h_target).pow(2).sum(-1) + c * lp_norm(delta, p)


def _pgd(x: torch.Tensor, eps: float, steps: int, loss_fn: Callable[[torch.Tensor], torch.Tensor],
         step_size: float | None) -> torch.Tensor:
    """Minimise ``loss_fn(δ).sum()`` by signed gradient steps, projecting after each."""
    _check_eps(eps)
    if steps < 1:
        raise ConfigError(f"attack steps must be >= 1, got {steps}")
    alpha = step_size if step_size is not None else 2.5 * eps / steps
    delta = torch.zeros_like(x, requires_grad=True)
    for _ in range(steps):
        loss = loss_fn(delta).sum()
        (g,) = torch.autograd.grad(loss, delta)
        with torch.no_grad():
            delta = project(delta - alpha * g.sign(), x, eps)
        delta.requires_grad_(True)
    return delta.detach()


def feature_attack(encoder: nn.Module, x: torch.Tensor, x_target: torch.Tensor, eps: float, steps: int = 40,
                   c: float = 0.0, p: float = 2.0, step_size: float | None = None) -> torch.Tensor:
    """Per-image δ with h(x + δ) ≈ h(x_t) (the feature-space attack).

    Args:
        encoder: h, images (B, 1, H, W) in [0, 1] → (B, D).
        x: (B, 1, H, W) clean images in [0, 1]; ``x_target`` the target images (same shape).
        eps: ℓ∞ bound; ``steps`` PGD steps of size ``step_size`` (default 2.5 ε / steps).
        c, p: weight and order of the ‖δ‖_p penalty.

    Returns:
        δ (B, 1, H, W) with ‖δ‖∞ ≤ ε and x + δ in [0, 1].
    """
    with torch.no_grad():
        h_t = encoder(x_target)
    return _pgd(x, eps, steps, lambda d: feature_loss(encoder(x + d), h_t, d, c, p), step_size)


def output_attack(encoder: nn.Module, decoder: CaptionDecoder, x: torch.Tensor, target_ids: torch.Tensor,
                  eps: float, steps: int = 40, step_size: float | None = None) -> torch.Tensor:
    """Per-image δ maximising log p(target caption | x + δ) (attacking the output layer)."""
    def nll(d: torch.Tensor) -> torch.Tensor:
        logp, _ = decoder.token_logp(encoder(x + d), target_ids)
        return -logp.sum(1)

    return _pgd(x, eps, steps, nll, step_size)


class AttackGenerator(nn.Module):
    """x → δ = ε·tanh(G(x) + U): a small conv net plus a learned image-sized pattern U.

    A 3-layer 3×3 conv net sees a 7×7 window, too small to draw the target's global shape, so
    the learned pattern ``U`` (initialised at zero) carries the target-specific part and the
    convs adapt it to each input. One forward pass per image at attack time.
    """

    def __init__(self, eps: float, width: int = 16, size: int = 28) -> None:
        super().__init__()
        _check_eps(eps)
        self.eps = float(eps)
        self.net = nn.Sequential(nn.Conv2d(1, width, 3, 1, 1), nn.ReLU(),
                                 nn.Conv2d(width, width, 3, 1, 1), nn.ReLU(),
                                 nn.Conv2d(width, 1, 3, 1, 1))
        self.pattern = nn.Parameter(torch.zeros(1, 1, size, size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """δ for images x (B, 1, H, W) in [0, 1], projected so x + δ stays in [0, 1]."""
        if x.shape[-2:] != self.pattern.shape[-2:]:
            raise ConfigError(f"attack generator: built for {tuple(self.pattern.shape[-2:])} images, "
                              f"got {tuple(x.shape[-2:])}")
        return project(self.eps * torch.tanh(self.net(x) + self.pattern), x, self.eps)


class GeneratorAttackObjective(nn.Module):
    """Engine objective: mean L_feat of G's δ on training images for one fixed target embedding."""

    def __init__(self, generator: AttackGenerator, encoder: nn.Module, h_target: torch.Tensor,
                 c: float = 0.0, p: float = 2.0) -> None:
        super().__init__()
        self.generator = generator
        self.encoder = encoder.requires_grad_(False).eval()
        self.register_buffer("h_target", h_target.detach().reshape(1, -1), persistent=False)
        self.c, self.p = float(c), float(p)

    def train(self, mode: bool = True) -> GeneratorAttackObjective:
        super().train(mode)
        self.encoder.eval()
        return self

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        x = batch["images"]
        x = (x.float() / 255.0 if x.dtype == torch.uint8 else x).reshape(len(x), 1, *x.shape[-2:])
        delta = self.generator(x)
        loss = feature_loss(self.encoder(x + delta), self.h_target, delta, self.c, self.p).mean()
        return loss, {"linf": float(delta.detach().abs().amax())}


def caption_success(adv: list[str], targets: list[str], clean: list[str], target_digits: list[int]) -> dict[str, float]:
    """Targeted-caption success of adversarial captions.

    - ``digit``: the caption's number word is the target's digit (its class is controlled);
    - ``exact``: the caption equals the target caption word for word;
    - ``inject``: keyword injection — of the target caption's words absent from the clean
      caption, the fraction the adversarial caption contains (mean over images that have any).

    Examples:
        >>> r = caption_success(["a thin three"], ["a thin three"], ["a thick one"], [3])
        >>> r["digit"], r["exact"], r["inject"]
        (1.0, 1.0, 1.0)
    """
    from fmlab.caption.data import digit_word_of

    n = len(adv)
    if not n or not len(targets) == len(clean) == len(target_digits) == n:
        raise ConfigError(f"caption_success: {n} adversarial, {len(targets)} target, {len(clean)} clean "
                          f"captions and {len(target_digits)} target digits must be equal and > 0")
    digit = sum(digit_word_of(a) == t for a, t in zip(adv, target_digits)) / n
    exact = sum(a == t for a, t in zip(adv, targets)) / n
    rates = []
    for a, t, c in zip(adv, targets, clean):
        keys = set(t.split()) - set(c.split())
        if keys:
            rates.append(len(keys & set(a.split())) / len(keys))
    return {"digit": float(digit), "exact": float(exact),
            "inject": float(sum(rates) / len(rates)) if rates else float("nan")}
