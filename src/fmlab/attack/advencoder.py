"""AdvEncoder (Zhou et al., ICCV 2023): a downstream-agnostic universal perturbation.

The attacker has a frozen pre-trained encoder f and unlabelled surrogate images only. A
generator G maps a FIXED noise vector z to one perturbation for every image:

* ℓ∞ variant: δ = ε·tanh(G(z)), added in pixel space [0, 1] and clamped there, so
  ‖δ‖∞ ≤ ε holds by construction after every optimiser step (no projection needed);
* patch variant: a square patch P = (tanh(G(z)) + 1)/2 ∈ [0, 1] of side
  ``round(sqrt(area·H·W))`` pasted at a random position per image.

G is trained to push f(x+δ) away from f(x) for every image, with an InfoNCE-style loss in
which the clean embeddings are the negatives and another adversarial embedding the positive
(adversarial embeddings are pulled together, i.e. towards one "attack direction", and away from
the clean ones), plus the high-frequency term of the paper,
L_HFC = −mean_i ‖H(x_i+δ) − H(x_i)‖₂ with H(x) = x − GaussianBlur(x):

    L = L_adv + λ_hf · L_HFC
    L_adv = −mean_i log [ e^{s(a_i, a_{i+1})/τ} / (e^{s(a_i, a_{i+1})/τ} + Σ_k e^{s(a_i, c_k)/τ}) ]

with a_i = f(x_i+δ)/‖·‖, c_k = f(x_k)/‖·‖ (no gradient), s the dot product and i+1 taken
modulo the batch. No downstream label is used anywhere, which is the point of the attack.
"""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction

import torch
import torch.nn.functional as F
from torch import nn

from fmlab.errors import ConfigError

__all__ = ["AdvEncoderLoss", "PerturbationGenerator", "advencoder_nce", "apply_delta",
           "gaussian_blur", "hfc_loss", "parse_eps", "paste_patches", "patch_side"]


def parse_eps(value: str | float, key: str = "--eps") -> float:
    """ε from ``"10/255"`` or a number; must lie in (0, 1] (pixels are in [0, 1]).

    Args:
        value: a fraction string, a decimal string or a number.
        key: the flag / config key named in the error.

    Returns:
        ε as a float.

    Examples:
        >>> round(parse_eps("10/255"), 6), parse_eps(0.5)
        (0.039216, 0.5)
        >>> parse_eps("2")
        Traceback (most recent call last):
        ...
        fmlab.errors.ConfigError: --eps: '2' must be in (0, 1] (a pixel-scale ℓ∞ bound, e.g. 10/255)
    """
    try:
        eps = float(Fraction(str(value).strip())) if not isinstance(value, (int, float)) \
            else float(value)
    except (ValueError, ZeroDivisionError):
        raise ConfigError(f"{key}: {value!r} is not a number or a fraction such as 10/255") from None
    if not (math.isfinite(eps) and 0.0 < eps <= 1.0):
        raise ConfigError(f"{key}: {value!r} must be in (0, 1] (a pixel-scale ℓ∞ bound, e.g. 10/255)")
    return eps


def float32_at_most(x: float) -> float:
    """The largest float32 value <= ``x``: float32(10/255) is slightly ABOVE 10/255, so δ is
    bounded by this value to make ``max|δ| <= ε`` hold exactly in float64 too.

    Examples:
        >>> e = float32_at_most(10 / 255); e <= 10 / 255, float(torch.tensor(e)) == e
        (True, True)
    """
    t = torch.tensor(x, dtype=torch.float32)
    if float(t) > x:
        t = torch.nextafter(t, torch.tensor(-math.inf))
    return float(t)


def patch_side(area: float, size: tuple[int, int]) -> int:
    """Side of the square patch covering ``area`` of an image of ``size`` (rounded, ≥ 1).

    Examples:
        >>> patch_side(0.03, (32, 32)), patch_side(0.25, (32, 32))
        (6, 16)
    """
    if not 0.0 < area < 1.0:
        raise ConfigError(f"--patch: {area!r} must be an area fraction in (0, 1)")
    side = max(1, round(math.sqrt(area * size[0] * size[1])))
    return min(side, size[0], size[1])


class PerturbationGenerator(nn.Module):
    """G: a fixed noise IMAGE z (z_dim, h, w) → one (C, h, w) map in (−1, 1) (tanh at the end).

    As in the paper's generator, the input is spatial noise and the convolutions keep full
    resolution, so G can produce per-pixel (high-frequency) structure; a G that upsamples a
    small code is biased to smooth patterns, which a CNN barely notices. The noise is a buffer:
    part of the checkpoint, never trained.

    Args:
        out_size: (h, w) of the output.
        channels: output channels.
        z_dim: channels of the noise image.
        width: channels of the hidden maps.
        depth: hidden 3×3 conv layers.

    Examples:
        >>> g = PerturbationGenerator((32, 32), 3, z_dim=4, width=8)
        >>> y = g(); y.shape, bool(y.abs().max() <= 1)
        (torch.Size([3, 32, 32]), True)
    """

    def __init__(self, out_size: tuple[int, int], channels: int = 3, z_dim: int = 8,
                 width: int = 32, depth: int = 3) -> None:
        super().__init__()
        self.out_size = (int(out_size[0]), int(out_size[1]))
        self.register_buffer("z", torch.rand(1, z_dim, *self.out_size) * 2 - 1)
        layers: list[nn.Module] = []
        c_in = z_dim
        for _ in range(depth):
            layers += [nn.Conv2d(c_in, width, 3, padding=1), nn.LeakyReLU(0.2)]
            c_in = width
        layers.append(nn.Conv2d(c_in, channels, 3, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self) -> torch.Tensor:
        return torch.tanh(self.body(self.z)[0])


def apply_delta(x: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """x + δ clamped to [0, 1]; δ (C, h, w) is resized (bilinear, re-clamped to its own ℓ∞
    bound) and its channels matched when x differs.

    Examples:
        >>> x = torch.full((2, 3, 4, 4), 0.99)
        >>> float(apply_delta(x, torch.full((3, 4, 4), 0.05)).max())
        1.0
    """
    delta = match_delta(delta, x.shape[1], tuple(x.shape[-2:]))
    return (x + delta.unsqueeze(0)).clamp(0.0, 1.0)


def match_delta(delta: torch.Tensor, channels: int, size: tuple[int, int]) -> torch.Tensor:
    """δ at ``channels`` × ``size``: bilinear resize (a convex combination, so the bound holds;
    clamped anyway), channel mean for grey inputs, repetition for RGB from grey."""
    bound = delta.abs().max()
    if tuple(delta.shape[-2:]) != tuple(size):
        delta = F.interpolate(delta.unsqueeze(0), size=size, mode="bilinear",
                              align_corners=False)[0].clamp(-bound, bound)
    if delta.shape[0] != channels:
        delta = delta.mean(0, keepdim=True) if channels == 1 else delta[:1].expand(channels, -1, -1)
    return delta


def paste_patches(x: torch.Tensor, patch: torch.Tensor, generator: torch.Generator | None = None
                  ) -> torch.Tensor:
    """Paste ``patch`` (C, p, p) at one uniformly drawn position per image of ``x`` (N, C, H, W).

    Examples:
        >>> out = paste_patches(torch.zeros(3, 1, 8, 8), torch.ones(1, 2, 2))
        >>> out.flatten(1).sum(1).tolist()
        [4.0, 4.0, 4.0]
    """
    n, c, h, w = x.shape
    p = patch.shape[-1]
    patch = match_delta(patch, c, (p, p)) if patch.shape[0] != c else patch
    tops = torch.randint(0, h - p + 1, (n,), generator=generator).tolist()
    lefts = torch.randint(0, w - p + 1, (n,), generator=generator).tolist()
    rows = []
    for i, (t, left) in enumerate(zip(tops, lefts)):
        pad = (left, w - left - p, t, h - t - p)
        mask = F.pad(torch.ones(1, p, p, dtype=x.dtype, device=x.device), pad)
        rows.append(x[i] * (1 - mask) + F.pad(patch, pad) * mask)
    return torch.stack(rows)


def gaussian_blur(x: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """Depthwise Gaussian blur (kernel 2·ceil(2σ)+1, reflect padding) of (N, C, H, W)."""
    r = max(1, math.ceil(2 * sigma))
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-t ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    c = x.shape[1]
    pad = min(r, x.shape[-1] - 1, x.shape[-2] - 1)
    y = F.pad(x, (pad, pad, pad, pad), mode="reflect") if pad == r else F.pad(x, (r,) * 4, "replicate")
    y = F.conv2d(y, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(y, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def hfc_loss(x_adv: torch.Tensor, x: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """L_HFC = −mean_i ‖H(x_adv_i) − H(x_i)‖₂, H(x) = x − GaussianBlur_σ(x).

    Examples:
        >>> x = torch.zeros(2, 1, 8, 8)
        >>> float(hfc_loss(x, x))
        -0.0
    """
    hx = x - gaussian_blur(x, sigma)
    ha = x_adv - gaussian_blur(x_adv, sigma)
    return -(ha - hx).flatten(1).norm(dim=1).mean()


def advencoder_nce(adv: torch.Tensor, clean: torch.Tensor, temperature: float) -> torch.Tensor:
    """L_adv of the module docstring: positive a_{i+1}, negatives every clean c_k of the batch.

    Args:
        adv: (B, D) adversarial embeddings (B ≥ 2).
        clean: (B, D) clean embeddings (treated as constants).
        temperature: τ.

    Returns:
        The scalar loss.

    Examples:
        >>> a = torch.eye(4); float(advencoder_nce(a, -a, 0.1)) > 0
        True
    """
    a = F.normalize(adv, dim=1)
    c = F.normalize(clean.detach(), dim=1)
    pos = (a * a.roll(-1, dims=0)).sum(1, keepdim=True)
    logits = torch.cat([pos, a @ c.T], dim=1) / temperature
    return -F.log_softmax(logits, dim=1)[:, 0].mean()


class AdvEncoderLoss(nn.Module):
    """The attack objective the engine trains: only G has trainable parameters.

    ``loss, logs = objective({"images": uint8 (B, H, W[, C])})``. Images are turned into pixels
    in [0, 1] at the backbone's input size (its preprocessing without normalisation), perturbed
    (δ or a patch), clamped, normalised, and embedded by the frozen backbone's trunk.

    Args:
        backbone: a :class:`fmlab.models.Backbone` (frozen here, kept in eval mode).
        eps: the ℓ∞ bound (ignored for the patch variant).
        patch: patch area fraction; 0 selects the ℓ∞ variant.
        temperature: τ of L_adv.
        lambda_hf: weight of L_HFC (0 turns it off).
        blur_sigma: σ of the blur in H.
        z_dim, width: generator sizes.
    """

    def __init__(self, backbone: nn.Module, eps: float, patch: float = 0.0,
                 temperature: float = 0.2, lambda_hf: float = 1.0, blur_sigma: float = 1.0,
                 z_dim: int = 8, width: int = 32) -> None:
        super().__init__()
        spec = backbone.preprocess
        c = spec.channels
        self.pixel_spec = dataclasses.replace(spec, mean=(0.0,) * c, std=(1.0,) * c)
        self.register_buffer("mean", torch.tensor(spec.mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(spec.std, dtype=torch.float32).view(1, -1, 1, 1))
        self.eps, self.patch = float32_at_most(eps), float(patch)
        self.temperature, self.lambda_hf, self.blur_sigma = temperature, lambda_hf, blur_sigma
        self.input_size = tuple(spec.input_size)
        side = patch_side(patch, self.input_size) if patch else None
        self.generator = PerturbationGenerator((side, side) if side else self.input_size, c,
                                               z_dim, width)
        self.victim = backbone.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> AdvEncoderLoss:
        """G follows ``mode``; the victim stays in eval mode (frozen BatchNorm statistics)."""
        super().train(mode)
        self.victim.eval()
        return self

    def perturbation(self) -> torch.Tensor:
        """δ (C, H, W) with |δ| ≤ ε, or the patch (C, p, p) in [0, 1]."""
        g = self.generator()
        return (g + 1) / 2 if self.patch else (self.eps * g).clamp(-self.eps, self.eps)

    def perturb(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Pixels x (N, C, H, W) in [0, 1] → adversarial pixels in [0, 1]."""
        p = self.perturbation()
        return paste_patches(x, p, generator) if self.patch else apply_delta(x, p)

    def embed_pixels(self, x: torch.Tensor) -> torch.Tensor:
        return self.victim.trunk((x - self.mean) / self.std)

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        x = self.pixel_spec(batch["images"]).to(self.mean.device)
        x_adv = self.perturb(x)
        with torch.no_grad():
            clean = self.embed_pixels(x)
        adv = self.embed_pixels(x_adv)
        l_adv = advencoder_nce(adv, clean, self.temperature)
        l_hf = hfc_loss(x_adv, x, self.blur_sigma)
        loss = l_adv + self.lambda_hf * l_hf if self.lambda_hf else l_adv
        cos = F.cosine_similarity(adv.detach(), clean, dim=1).mean()
        return loss, {"l_adv": l_adv.detach(), "l_hf": l_hf.detach(), "cos_clean_adv": cos}
