"""A tiny in-memory object pool for the synthetic generator tests: every pool image is a filled
rectangle with its own intensity, so the pool image an output pixel came from can be read back."""

from __future__ import annotations

import numpy as np

LEVELS = 100 + 20 * np.arange(8)  # intensity of pool image j, >= 100 so it counts as ink


def level_pool(rgb: bool = False, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """8 images 28x28 (labels j % 4): image j is a rectangle of random size at intensity LEVELS[j]."""
    rng = np.random.default_rng(seed)
    images = np.zeros((8, 28, 28), dtype=np.uint8)
    for j in range(8):
        h, w = rng.integers(14, 22), rng.integers(8, 20)
        y, x = (28 - h) // 2, (28 - w) // 2
        images[j, y:y + h, x:x + w] = LEVELS[j]
    labels = np.arange(8) % 4
    if rgb:
        images = np.repeat(images[..., None], 3, axis=-1)
    return images, labels


def pool_image_of(level: float) -> int:
    """The pool image whose intensity is ``level`` (the rectangles' interiors keep it exactly)."""
    return int(np.argmin(np.abs(LEVELS - level)))
