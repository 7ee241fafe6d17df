"""The ``strings`` generator: horizontal strings of pool objects with their transcription.

With MNIST as the pool these are digit strings ("40721"), the smallest honest sequence-recognition
task: a recogniser must read a variable number of characters left to right, and the answer is known.
Each object is resized to the string height, cropped to the columns that carry ink (so a digit's
empty margins do not become huge gaps) and placed after the previous one with a random gap, so
character boxes are ordered and never overlap. All images share one fixed padded width,
``max_len * char_width + (max_len + 1) * max_gap``, which depends on the parameters only, so any
batch stacks and renders the same pixels as its samples one by one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

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
from fmlab.utils.validation import check, non_negative_int, positive_int

__all__ = ["TextStrings", "render_strings", "strings_width"]


def strings_width(pool_shape: tuple[int, ...], max_len: int, height: int, max_gap: int) -> tuple[int, int]:
    """``(char_width, image_width)``: an object's width at ``height`` and the padded string width.

    Args:
        pool_shape: shape of the pool images ``(N, h, w[, 3])``.
        max_len: most characters per string.
        height: string height in pixels.
        max_gap: largest gap before each character.

    Returns:
        ``(char_width, image_width)`` in pixels.

    Examples:
        >>> strings_width((10, 28, 28), 6, 32, 4)
        (32, 220)
    """
    char_w = max(1, round(pool_shape[2] * height / pool_shape[1]))
    return char_w, max_len * char_w + (max_len + 1) * max_gap


def _check_params(min_len: int, max_len: int, height: int, min_gap: int, max_gap: int) -> tuple[int, ...]:
    min_len = positive_int("min_len", min_len)
    max_len = positive_int("max_len", max_len)
    check(max_len >= min_len, "max_len", max_len, f"must be >= min_len ({min_len})")
    height = positive_int("height", height)
    min_gap = non_negative_int("min_gap", min_gap)
    max_gap = non_negative_int("max_gap", max_gap)
    check(max_gap >= min_gap, "max_gap", max_gap, f"must be >= min_gap ({min_gap})")
    return min_len, max_len, height, min_gap, max_gap


@register_synthetic("strings", params={"min_len": 3, "max_len": 6, "height": 32, "min_gap": 1, "max_gap": 4,
                                       "sep": ""},
                    description="horizontal strings of 3-6 objects with their transcription, for "
                                "sequence recognition")
def render_strings(pool_images: np.ndarray, pool_labels: np.ndarray, indices: np.ndarray | Sequence[int],
                   seed: int, min_len: int = 3, max_len: int = 6, height: int = 32, min_gap: int = 1,
                   max_gap: int = 4, class_names: Sequence[str] | None = None, sep: str = "") -> dict:
    """Render strings of ``min_len..max_len`` pool objects side by side, with transcriptions and boxes.

    Sample ``i`` depends only on ``(seed, i)`` and the pool: its length, each character's pool image
    and the gap before it are drawn from ``np.random.default_rng([seed, i])``.

    Args:
        pool_images: uint8 ``(N, h, w)`` or ``(N, h, w, 3)`` objects; alpha = intensity / luminance.
        pool_labels: ``(N,)`` integer class of each object.
        indices: ``(B,)`` sample indices (>= 0) to render.
        seed: split seed (>= 0).
        min_len: fewest characters per string.
        max_len: most characters per string L (the length is uniform in ``min_len..max_len``).
        height: image height H; objects are resized to it, keeping their aspect ratio.
        min_gap: smallest blank gap (pixels) before each character.
        max_gap: largest gap.
        class_names: optional text of each class (default: the label as a number, "0".."9" for MNIST).
        sep: put between characters in the transcription.

    Returns:
        dict with ``images`` uint8 ``(B, H, W)`` (``(B, H, W, 3)`` for an RGB pool), zero-padded on the
        right to the fixed width W of :func:`strings_width`; ``labels`` int64 ``(B, L)`` class of each
        character left to right; ``boxes`` float32 ``(B, L, 4)`` tight xyxy box (x1, y1 exclusive) of
        each character; ``lengths`` int64 ``(B,)``; ``texts`` (and its alias ``captions``) a list of
        B transcriptions. Slots past a string's length are -1.

    Examples:
        >>> rng = np.random.default_rng(0)
        >>> pool = rng.integers(0, 256, (4, 28, 28), dtype=np.uint8)
        >>> out = render_strings(pool, np.arange(4), [0, 1], seed=0)
        >>> out["images"].shape, out["boxes"].shape
        ((2, 32, 220), (2, 6, 4))
        >>> len(out["texts"][0]) == int(out["lengths"][0])
        True
    """
    images, labels_pool = check_pool(pool_images, pool_labels)
    idx = check_indices(indices)
    min_len, max_len, height, min_gap, max_gap = _check_params(min_len, max_len, height, min_gap, max_gap)
    char_w, width = strings_width(images.shape, max_len, height, max_gap)
    b = len(idx)
    u = sample_uniforms(seed, idx, 1 + 2 * max_len)
    lengths = min_len + pick(u[:, 0], max_len - min_len + 1)
    present = np.arange(max_len)[None, :] < lengths[:, None]
    pool_idx = pick(u[:, 1::2], len(images))
    gaps = min_gap + pick(u[:, 2::2], max_gap - min_gap + 1)

    objects = resize_objects(images[pool_idx.ravel()], height, char_w)
    alpha = alpha_of(objects)
    ext = ink_extent(alpha).reshape(b, max_len, 4)
    cols = np.arange(char_w)
    inside = (cols >= ext[..., 0:1]) & (cols < ext[..., 2:3]) & present[..., None]  # (B, L, char_w)
    objects = objects.reshape((b, max_len) + objects.shape[1:])
    alpha = alpha.reshape(b, max_len, height, char_w) * inside[:, :, None, :]
    objects = objects * inside.reshape(inside.shape[:2] + (1, char_w) + (1,) * (objects.ndim - 4))

    widths = np.where(present, ext[..., 2] - ext[..., 0], 0)
    left = np.cumsum(gaps, axis=1) + np.cumsum(widths, axis=1) - widths  # x0 of each character's ink
    canvas = np.zeros((b, height, char_w + width) + images.shape[3:], dtype=np.float32)
    for j in range(max_len):
        xs = char_w + left[:, j] - ext[:, j, 0]
        paste_over(canvas, objects[:, j], alpha[:, j], np.zeros(b, dtype=np.int64), xs)

    boxes = np.stack([left, ext[..., 1], left + widths, ext[..., 3]], axis=-1).astype(np.float32)
    labels = np.where(present, labels_pool[pool_idx], -1)
    texts = [sep.join(label_names(row[row >= 0], class_names)) for row in labels]
    return {
        "images": to_uint8(canvas[:, :, char_w:]),
        "labels": labels,
        "boxes": np.where(present[..., None], boxes, np.float32(-1)),
        "lengths": lengths,
        "texts": texts,
        "captions": texts,
    }


class TextStrings:
    """Text-only training source: random transcriptions, sample ``i`` from ``default_rng([seed, i])``.

    Args:
        n_classes: number of symbols (drawn uniformly).
        min_len: shortest string.
        max_len: longest string.
        n: number of samples.
        seed: corpus seed.

    Examples:
        >>> src = TextStrings(10, 3, 6, n=100)
        >>> b = src.get_batch(np.array([0, 5]))
        >>> b["labels"].shape, bool(((b["labels"] >= 0).sum(1) >= 3).all())
        (torch.Size([2, 6]), True)
    """

    def __init__(self, n_classes: int, min_len: int, max_len: int, n: int, seed: int = 0) -> None:
        self.k, self.min_len, self.max_len, self.n, self.seed = n_classes, min_len, max_len, n, seed

    def __len__(self) -> int:
        return self.n

    def get_batch(self, indices: np.ndarray) -> dict[str, torch.Tensor]:
        """``{"labels": (B, max_len)}`` of ``indices``."""
        rows = np.full((len(indices), self.max_len), -1, dtype=np.int64)
        for r, i in enumerate(np.asarray(indices).reshape(-1)):
            rng = np.random.default_rng([self.seed, int(i)])
            length = int(rng.integers(self.min_len, self.max_len + 1))
            rows[r, :length] = rng.integers(0, self.k, length)
        return {"labels": torch.from_numpy(rows)}
