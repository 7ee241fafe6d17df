"""DiffAugment (Zhao et al. 2020): differentiable, per-sample augmentations applied to *both* real
and fake images before D, in the D and the G updates.

Each op is a pure function of the images and its explicit random parameters (so it can be tested
against its formula) plus a ``random_*`` wrapper that draws those parameters from a
``torch.Generator``:
- brightness: x + (u − 0.5)
- saturation: (x − mean_c x)·2u + mean_c x
- contrast:   (x − mean_chw x)·(u + 0.5) + mean_chw x
- translation (ratio 1/8): out[i, j] = x[i + dy, j + dx], zero outside; |d| ≤ ⌊H/8 + ½⌋
- cutout (ratio 1/2): a square of side ⌊H/2 + ½⌋ centred at a random pixel is zeroed
Policy ``"color"`` = brightness, saturation, contrast. Gradients flow to x through every op.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from fmlab.errors import ConfigError


def brightness(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    return x + (u.view(-1, 1, 1, 1).to(x) - 0.5)


def saturation(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * (u.view(-1, 1, 1, 1).to(x) * 2) + mean


def contrast(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (u.view(-1, 1, 1, 1).to(x) + 0.5) + mean


def translate(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """out[b, :, i, j] = x[b, :, i + dy_b, j + dx_b] where that pixel exists, else 0."""
    b, _, h, w = x.shape
    rows = torch.arange(h, device=x.device)[None, :] + dy.to(x.device)[:, None] + 1  # (B, H)
    cols = torch.arange(w, device=x.device)[None, :] + dx.to(x.device)[:, None] + 1  # (B, W)
    rows, cols = rows.clamp(0, h + 1), cols.clamp(0, w + 1)  # 0 and h+1 index the zero border
    padded = torch.nn.functional.pad(x, [1, 1, 1, 1])
    bidx = torch.arange(b, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[bidx, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2)


def cutout_size(h: int, w: int, ratio: float = 0.5) -> tuple[int, int]:
    return int(h * ratio + 0.5), int(w * ratio + 0.5)


def cutout(x: torch.Tensor, cy: torch.Tensor, cx: torch.Tensor,
           size: tuple[int, int]) -> torch.Tensor:
    """Zero rows [cy − sh//2, cy − sh//2 + sh) × cols [cx − sw//2, cx − sw//2 + sw) (clipped)."""
    _, _, h, w = x.shape
    sh, sw = size
    top = (cy.to(x.device) - sh // 2)[:, None]
    left = (cx.to(x.device) - sw // 2)[:, None]
    r = torch.arange(h, device=x.device)[None, :]
    c = torch.arange(w, device=x.device)[None, :]
    in_r = (r >= top) & (r < top + sh)  # (B, H)
    in_c = (c >= left) & (c < left + sw)  # (B, W)
    keep = ~(in_r[:, :, None] & in_c[:, None, :])
    return x * keep[:, None].to(x.dtype)


# --------------------------------------------------------------------- random wrappers


def _u(x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
    return torch.rand(x.shape[0], generator=g)


def random_brightness(x: torch.Tensor, g: torch.Generator | None = None) -> torch.Tensor:
    return brightness(x, _u(x, g))


def random_saturation(x: torch.Tensor, g: torch.Generator | None = None) -> torch.Tensor:
    return saturation(x, _u(x, g))


def random_contrast(x: torch.Tensor, g: torch.Generator | None = None) -> torch.Tensor:
    return contrast(x, _u(x, g))


def random_translation(x: torch.Tensor, g: torch.Generator | None = None,
                       ratio: float = 0.125) -> torch.Tensor:
    b, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sh, sh + 1, (b,), generator=g)
    dx = torch.randint(-sw, sw + 1, (b,), generator=g)
    return translate(x, dy, dx)


def random_cutout(x: torch.Tensor, g: torch.Generator | None = None,
                  ratio: float = 0.5) -> torch.Tensor:
    b, _, h, w = x.shape
    sh, sw = cutout_size(h, w, ratio)
    # centres as in the reference: an even side may start its square one pixel past the edge
    cy = torch.randint(0, h + (1 - sh % 2), (b,), generator=g)
    cx = torch.randint(0, w + (1 - sw % 2), (b,), generator=g)
    return cutout(x, cy, cx, (sh, sw))


POLICIES: dict[str, list[Callable[[torch.Tensor, torch.Generator | None], torch.Tensor]]] = {
    "color": [random_brightness, random_saturation, random_contrast],
    "brightness": [random_brightness],
    "saturation": [random_saturation],
    "contrast": [random_contrast],
    "translation": [random_translation],
    "cutout": [random_cutout],
}


def parse_policy(policy: str) -> list[str]:
    """``"color,translation,cutout"`` → its op-group names; unknown names raise ConfigError."""
    names = [p.strip() for p in policy.split(",") if p.strip()]
    for n in names:
        if n not in POLICIES:
            raise ConfigError(f"unknown DiffAugment op {n!r} in policy {policy!r}; "
                              f"known: {', '.join(sorted(POLICIES))}")
    return names


def diff_augment(x: torch.Tensor, policy: str = "color,translation,cutout",
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Apply the policy's ops in order, each with fresh per-sample draws from ``generator``."""
    for name in parse_policy(policy):
        for op in POLICIES[name]:
            x = op(x, generator)
    return x.contiguous()
