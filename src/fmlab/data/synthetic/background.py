"""Backgrounds and distractors for the ``canvas`` source: clutter that is not an object.

A canvas may start from a seeded background (a smooth two-colour ``gradient`` or a low-frequency
noise ``texture``) and carry ``distractors``: random strokes and blobs painted under the objects.
Neither is an object: they never enter boxes, labels, masks or captions, so a model must learn to
ignore them. Each draws its numbers from :func:`~fmlab.data.synthetic.rng.hash_uniform` on its own
``stream``, so the objects' layout (stream 0) and the grey noise (stream 1) are the same whether
clutter is on or off, and a batch equals its samples rendered one by one. Both stay darker than
the palette's objects (channel values <= 180 of 255) so the objects remain visible.
"""

from __future__ import annotations

import numpy as np

from fmlab.data.synthetic.rng import hash_uniform
from fmlab.utils.validation import check, non_negative_int

BACKGROUNDS = ("none", "gradient", "texture")
MAX_DISTRACTORS = 32
_BG_STREAM, _DISTRACTOR_STREAM = 2, 3
_GRID = (3, 6)  # texture: coarse grid sides of its two octaves
_BRIGHT = 160.0  # brightest background / distractor channel value
_MAX_LEN, _MAX_RADIUS = 0.45, 0.1  # distractor segment length and radius, fractions of the side


def check_clutter(background: str, distractors: int) -> tuple[str, int]:
    """Validate the ``background`` and ``distractors`` parameters.

    Args:
        background: one of :data:`BACKGROUNDS`.
        distractors: strokes/blobs per canvas, ``0..MAX_DISTRACTORS``.

    Returns:
        ``(background, distractors)``.

    Examples:
        >>> check_clutter("texture", 2)
        ('texture', 2)
    """
    check(background in BACKGROUNDS, "background", background, f"must be one of {', '.join(BACKGROUNDS)}")
    distractors = non_negative_int("distractors", distractors)
    check(distractors <= MAX_DISTRACTORS, "distractors", distractors, f"must be <= {MAX_DISTRACTORS}")
    return background, distractors


def _upsample(grid: np.ndarray, size: int) -> np.ndarray:
    """Bilinear upsampling of (B, g, g, C) grids to (B, S, S, C), corners on the canvas corners."""
    g = grid.shape[1]
    pos = np.linspace(0.0, g - 1.0, size)
    lo = np.minimum(pos.astype(np.int64), g - 2)
    frac = (pos - lo).astype(np.float32)
    w = np.zeros((size, g), np.float32)  # (S, g) interpolation matrix, two non-zeros per row
    w[np.arange(size), lo] = 1.0 - frac
    w[np.arange(size), lo + 1] = frac
    rows = np.einsum("sg,bghc->bshc", w, grid, optimize=True)
    return np.einsum("th,bshc->bstc", w, rows, optimize=True)


def render_background(kind: str, seed: int, indices: np.ndarray, size: int) -> np.ndarray | None:
    """Each sample's background, float32 (B, S, S, 3) in [0, 255], or None for ``"none"``.

    Args:
        kind: ``"none"``, ``"gradient"`` (two random colours blended along a random direction) or
            ``"texture"`` (a random tint modulated by two octaves of bilinear value noise).
        seed: the split's seed.
        indices: (B,) sample indices; sample ``i`` depends only on ``(seed, i)``.
        size: canvas side ``S``.

    Returns:
        The backgrounds, or None (black, nothing to paint).

    Examples:
        >>> bg = render_background("gradient", 0, np.arange(2), 16)
        >>> bg.shape, bool(bg.min() >= 0 and bg.max() <= 255)
        ((2, 16, 16, 3), True)
    """
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if kind == "none":
        return None
    if kind == "gradient":
        u = hash_uniform(seed, idx, 7, stream=_BG_STREAM).astype(np.float32)
        c0, c1 = u[:, 0:3] * _BRIGHT, u[:, 3:6] * _BRIGHT
        angle = u[:, 6] * np.float32(2 * np.pi)
        r = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
        t = (np.cos(angle)[:, None, None] * r[None, None, :] + np.sin(angle)[:, None, None] * r[None, :, None])
        t = np.clip(t * np.float32(np.sqrt(0.5) * 2) * 0.5 + 0.5, 0.0, 1.0)[..., None]  # corner to corner
        return c0[:, None, None, :] + t * (c1 - c0)[:, None, None, :]
    n_cells = [g * g for g in _GRID]
    u = hash_uniform(seed, idx, 3 + sum(n_cells), stream=_BG_STREAM).astype(np.float32)
    tint = 0.35 + 0.65 * u[:, :3]
    noise, start = np.zeros((len(idx), size, size, 1), np.float32), 3
    for g, n, amp in zip(_GRID, n_cells, (0.65, 0.35), strict=True):
        noise += amp * _upsample(u[:, start:start + n].reshape(-1, g, g, 1), size)
        start += n
    return (_BRIGHT * tint)[:, None, None, :] * noise


def paint_distractors(canvas: np.ndarray, seed: int, indices: np.ndarray, count: int) -> None:
    """Paint ``count`` random strokes/blobs on each canvas, in place (anti-aliased capsules).

    A distractor is a capsule (the points within radius ``r`` of a segment): a thin long one is a
    stroke, a short thick one a blob. Its ends, radius and colour are hashes of ``(seed, i, d)``.

    Args:
        canvas: C-contiguous float32 (B, S, S, 3) canvases in [0, 255], painted in place.
        seed: the split's seed.
        indices: (B,) sample indices.
        count: distractors per canvas.

    Examples:
        >>> c = np.zeros((2, 16, 16, 3), np.float32); paint_distractors(c, 0, np.arange(2), 3)
        >>> bool((c.reshape(2, -1).max(1) > 0).all())
        True
    """
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    size = canvas.shape[1]
    if count == 0 or len(idx) == 0:
        return
    u = hash_uniform(seed, idx, 9 * count, stream=_DISTRACTOR_STREAM).astype(np.float32).reshape(len(idx), count, 9)
    # every capsule fits a W x W window around its segment's midpoint: paint only that window
    win = min(size, int(np.ceil((_MAX_LEN + 2 * _MAX_RADIUS) * size)) + 3)
    r = np.arange(win, dtype=np.int64)
    flat = canvas.reshape(-1, 3)
    check(np.shares_memory(flat, canvas), "canvas", canvas.shape, "must be C-contiguous (painted in place)")
    for d in range(count):
        v = u[:, d]
        blob = v[:, 0] < 0.5
        length = np.where(blob, 0.08, 0.2 + (_MAX_LEN - 0.2) * v[:, 3]) * size
        ang = v[:, 4] * np.float32(2 * np.pi)
        dx, dy = np.cos(ang) * length, np.sin(ang) * length
        radius = np.where(blob, 0.05 + (_MAX_RADIUS - 0.05) * v[:, 5], 0.012 + 0.02 * v[:, 5]) * size + 0.5
        mx, my = v[:, 1] * size, v[:, 2] * size  # the segment's midpoint
        x0 = np.clip(np.floor(mx - win / 2).astype(np.int64), 0, size - win)
        y0 = np.clip(np.floor(my - win / 2).astype(np.int64), 0, size - win)
        px = (r[None, None, :] + x0[:, None, None] + 0.5 - (mx - dx / 2)[:, None, None]).astype(np.float32)
        py = (r[None, :, None] + y0[:, None, None] + 0.5 - (my - dy / 2)[:, None, None]).astype(np.float32)
        dxe, dye = dx[:, None, None], dy[:, None, None]
        t = np.clip((px * dxe + py * dye) / (dxe * dxe + dye * dye), 0.0, 1.0)
        ex, ey = px - t * dxe, py - t * dye
        alpha = np.clip(radius[:, None, None] + 0.5 - np.sqrt(ex * ex + ey * ey), 0.0, 1.0)
        bb, wy, wx = np.nonzero(alpha)  # paint the capsule's own pixels only (~10% of the window)
        pos = (bb * size + y0[bb] + wy) * size + x0[bb] + wx
        a = alpha[bb, wy, wx][:, None]
        flat[pos] += a * ((20.0 + _BRIGHT * v[bb, 6:9]) - flat[pos])
