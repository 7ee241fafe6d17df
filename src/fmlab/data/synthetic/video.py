"""The ``video`` generator: objects bouncing around a small square over a few frames.

Each object keeps its appearance (the pool image, hence its class) and moves in one of the 8
compass directions at one of two speeds, reflecting off the walls. The labels are known exactly,
so a video model can be probed for *what* (appearance) separately from *how it moves* (motion):
X-CLIP-style studies on data where the answer is known.

Motion is integer pixels per frame along each moving axis (``slow`` or ``fast``; a diagonal step moves
that many pixels in x *and* in y), so objects are pasted without resampling and the displacement of
an object between two frames equals its velocity exactly until it hits a wall. The position over
time is a closed form (a triangle wave reflecting at ``0`` and ``size - object_size``), so all
frames of a batch are computed at once.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fmlab.data.synthetic._paste import (
    alpha_of,
    check_indices,
    check_pool,
    ink_extent,
    label_names,
    paste_over,
    pick,
    resize_objects,
    sample_uniforms,
    to_uint8,
)
from fmlab.data.synthetic.registry import register_synthetic
from fmlab.utils.validation import check, positive_int

__all__ = ["DIRECTIONS", "DIRECTION_STEPS", "SPEEDS", "render_video"]

# Direction class d points at angle d * 45 degrees counter-clockwise from "right", on screen
# (image rows grow downwards, so "up" is a negative row step).
DIRECTIONS = ("right", "up and to the right", "up", "up and to the left",
              "left", "down and to the left", "down", "down and to the right")
DIRECTION_STEPS = np.array([(1, 0), (1, -1), (0, -1), (-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1)], dtype=np.int64)
SPEEDS = ("slow", "fast")
_DRAWS = 5  # per object slot: pool index, direction, speed, x0, y0


def _check_params(frames: int, size: int, max_objects: int, object_size: int | None,
                  slow: int, fast: int) -> tuple[int, int, int, int, np.ndarray]:
    frames = positive_int("frames", frames)
    size = positive_int("size", size)
    max_objects = positive_int("max_objects", max_objects)
    object_size = size // 2 if object_size is None else positive_int("object_size", object_size)
    check(object_size < size, "object_size", object_size, f"must be < size ({size}) so objects can move")
    slow = positive_int("slow", slow)
    fast = positive_int("fast", fast)
    check(fast > slow, "fast", fast, f"must be > slow ({slow})")
    return frames, size, max_objects, object_size, np.array([slow, fast], dtype=np.int64)


def _bounce(start: np.ndarray, velocity: np.ndarray, frames: int, span: int) -> np.ndarray:
    """Positions ``(..., T)`` of ``start + velocity * t`` reflected into ``[0, span]`` (triangle wave)."""
    free = start[..., None] + velocity[..., None] * np.arange(frames)
    m = np.mod(free, 2 * span)
    return span - np.abs(m - span)


def _starts(u: np.ndarray, velocity: np.ndarray, frames: int, span: int) -> np.ndarray:
    """Start positions ``(B, K, 2)`` that keep each clip's motion what its label says.

    A start drawn anywhere in ``[0, span]`` could sit at the wall the object heads for, so it would
    bounce on the first frame and move against its label for the whole clip. The start is drawn
    where the object travels ``|v| * (T - 1)`` pixels before reaching a wall when the canvas allows
    it (no bounce at all), else where it travels at least half the clip along its label.
    """
    speed = np.abs(velocity)
    whole, half = speed * (frames - 1), speed * ((frames - 1) // 2)
    need = np.where(whole <= span, whole, np.minimum(half, span))
    lo = np.where(velocity < 0, need, 0)
    hi = np.where(velocity > 0, span - need, span)
    return lo + np.minimum((u * (hi - lo + 1)).astype(np.int64), hi - lo)


def _captions(labels: np.ndarray, directions: np.ndarray, speeds: np.ndarray,
              class_names: Sequence[str] | None) -> list[str]:
    """"a fast 4 moving up and to the right and a slow 7 moving left" per sample."""
    captions = []
    for lab, dirs, spd in zip(labels, directions, speeds, strict=True):
        keep = lab >= 0
        names = label_names(lab[keep], class_names)
        parts = [f"a {SPEEDS[s]} {n} moving {DIRECTIONS[d]}"
                 for n, d, s in zip(names, dirs[keep].tolist(), spd[keep].tolist(), strict=True)]
        captions.append(" and ".join(parts))
    return captions


def _paint(objects: np.ndarray, present: np.ndarray, pos: np.ndarray, size: int, osz: int) -> tuple[np.ndarray, ...]:
    """Clips uint8 ``(B, T, S, S[, 3])`` of ``objects`` (``(B*K, h, w[, 3])``) pasted at ``pos`` ``(B, K, T, 2)``,
    and each object's ink extent ``(B, K, 4)`` inside its patch; absent slots paint nothing."""
    b, k, frames = pos.shape[:3]
    objects = resize_objects(objects, osz, osz)
    alpha = alpha_of(objects)
    extent = ink_extent(alpha).reshape(b, k, 4)
    shape = (b * frames, size, size) + objects.shape[3:]
    canvas = np.zeros(shape, dtype=np.float32)
    objects = objects.reshape((b, k) + objects.shape[1:]) * present.reshape((b, k) + (1,) * (objects.ndim - 1))
    alpha = alpha.reshape(b, k, osz, osz) * present[..., None, None]
    for j in range(k):
        paste_over(canvas, np.repeat(objects[:, j], frames, axis=0), np.repeat(alpha[:, j], frames, axis=0),
                   pos[:, j, :, 1].ravel(), pos[:, j, :, 0].ravel())
    return to_uint8(canvas).reshape((b, frames) + shape[1:]), extent


@register_synthetic("video", params={"frames": 8, "size": 32, "max_objects": 1, "slow": 1, "fast": 2},
                    description="objects bouncing over T frames; appearance, motion (direction, speed) "
                                "labels and a caption")
def render_video(pool_images: np.ndarray, pool_labels: np.ndarray, indices: np.ndarray | Sequence[int],
                 seed: int, frames: int = 8, size: int = 32, max_objects: int = 1,
                 object_size: int | None = None, slow: int = 1, fast: int = 2,
                 class_names: Sequence[str] | None = None) -> dict:
    """Render clips of 1..``max_objects`` pool objects bouncing off the walls of a ``size`` square.

    Sample ``i`` depends only on ``(seed, i)`` and the pool: its number of objects, each object's pool
    image, direction (8 compass classes, :data:`DIRECTIONS`), speed (:data:`SPEEDS`) and start position
    are drawn from ``np.random.default_rng([seed, i])``. Later objects are drawn over earlier ones.

    Args:
        pool_images: uint8 ``(N, h, w)`` or ``(N, h, w, 3)`` objects; alpha = intensity / luminance.
        pool_labels: ``(N,)`` integer class of each object.
        indices: ``(B,)`` sample indices (>= 0) to render.
        seed: split seed (>= 0).
        frames: clip length T.
        size: frame side S in pixels.
        max_objects: most objects per clip K (the count is uniform in ``1..K``).
        object_size: side objects are resized to (default ``size // 2``); must be < ``size``.
        slow: pixels per frame (per moving axis) of speed class 0.
        fast: pixels per frame of speed class 1 (> ``slow``).
        class_names: optional names for captions (default: the label as a number).

    Returns:
        dict with ``frames`` uint8 ``(B, T, S, S)`` (``(B, T, S, S, 3)`` for an RGB pool),
        ``labels`` int64 ``(B, K)`` appearance class, ``directions`` int64 ``(B, K)`` direction class,
        ``speeds`` int64 ``(B, K)`` speed class, ``velocity`` int64 ``(B, K, 2)`` (dx, dy) pixels per frame
        at the start (0 for empty slots), ``positions`` int64 ``(B, K, T, 2)`` top-left (x, y) of each object's patch,
        ``boxes`` float32 ``(B, K, T, 4)`` tight xyxy box (x1, y1 exclusive) of each object per frame,
        ``n_objects`` int64 ``(B,)``, and ``captions`` a list of B str. Empty slots are -1.

    Examples:
        >>> rng = np.random.default_rng(0)
        >>> pool = rng.integers(0, 256, (4, 28, 28), dtype=np.uint8)
        >>> out = render_video(pool, np.arange(4), [0, 1], seed=0)
        >>> out["frames"].shape, out["boxes"].shape, out["frames"].dtype
        ((2, 8, 32, 32), (2, 1, 8, 4), dtype('uint8'))
        >>> out["captions"][0].startswith("a ")
        True
    """
    images, labels_pool = check_pool(pool_images, pool_labels)
    idx = check_indices(indices)
    frames, size, k, osz, speed_px = _check_params(frames, size, max_objects, object_size, slow, fast)
    b, span = len(idx), size - osz
    u = sample_uniforms(seed, idx, 1 + _DRAWS * k)
    n_obj = 1 + pick(u[:, 0], k)
    slots = u[:, 1:].reshape(b, k, _DRAWS)
    present = np.arange(k)[None, :] < n_obj[:, None]
    pool_idx = pick(slots[..., 0], len(images))
    direction, speed = pick(slots[..., 1], 8), pick(slots[..., 2], 2)
    velocity = DIRECTION_STEPS[direction] * speed_px[speed][..., None]
    start = _starts(slots[..., 3:5], velocity, frames, span)
    pos = np.stack([_bounce(start[..., a], velocity[..., a], frames, span) for a in (0, 1)], axis=-1)

    clips, extent = _paint(images[pool_idx.ravel()], present, pos, size, osz)
    boxes = (np.concatenate([pos, pos], axis=-1) + extent[:, :, None]).astype(np.float32)
    labels = np.where(present, labels_pool[pool_idx], -1)
    direction, speed = np.where(present, direction, -1), np.where(present, speed, -1)
    return {
        "frames": clips,
        "images": clips,  # the same array under the name every synthetic source reads
        "labels": labels,
        "directions": direction,
        "speeds": speed,
        "velocity": np.where(present[..., None], velocity, 0),
        "positions": np.where(present[..., None, None], pos, -1),
        "boxes": np.where(present[..., None, None], boxes, np.float32(-1)),
        "n_objects": n_obj,
        "captions": _captions(labels, direction, speed, class_names),
    }
