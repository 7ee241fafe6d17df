"""Shared pieces of the synthetic generators: per-sample randomness, object resizing, alpha pasting.

Every generator draws sample ``i``'s random numbers from ``np.random.default_rng([seed, i])`` alone,
so a batch of indices renders the same pixels as the same indices one by one, whatever the batch.
Objects are pasted *premultiplied*: an object image on a black background already equals
``colour * alpha``, with alpha its own intensity (grey) or luminance (RGB), so compositing is
``canvas * (1 - alpha) + object`` and a lone object on black keeps its exact pixel values.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fmlab.data.synthetic.rng import hash_uniform
from fmlab.utils.validation import check, non_negative_int

__all__ = [
    "INK",
    "alpha_of",
    "check_indices",
    "check_pool",
    "ink_extent",
    "label_names",
    "paste_over",
    "pick",
    "resize_objects",
    "sample_uniforms",
    "to_uint8",
]

# Alpha above which a pixel counts as part of the object for boxes and masks.
INK = 0.25
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def check_pool(pool_images: np.ndarray, pool_labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate an object pool: uint8 ``(N, h, w)`` or ``(N, h, w, 3)`` images and ``N`` integer labels.

    Args:
        pool_images: the object images.
        pool_labels: their class labels.

    Returns:
        ``(images, labels)`` as numpy arrays (labels int64).

    Examples:
        >>> imgs, labels = check_pool(np.zeros((2, 5, 5), np.uint8), [0, 1])
        >>> labels.dtype
        dtype('int64')
    """
    images = np.asarray(pool_images)
    check(images.dtype == np.uint8, "pool_images", images.dtype, "must be uint8")
    rgb = images.ndim == 4 and images.shape[-1] == 3
    check(images.ndim == 3 or rgb, "pool_images", images.shape, "must be (N, h, w) or (N, h, w, 3)")
    check(images.shape[0] >= 1 and min(images.shape[1:3]) >= 1, "pool_images", images.shape, "must not be empty")
    labels = np.asarray(pool_labels)
    check(labels.shape == (images.shape[0],), "pool_labels", labels.shape,
          f"must have shape ({images.shape[0]},) like pool_images")
    check(np.issubdtype(labels.dtype, np.integer), "pool_labels", labels.dtype, "must be integers")
    return images, labels.astype(np.int64)


def check_indices(indices: np.ndarray | Sequence[int]) -> np.ndarray:
    """Validate sample indices: a 1-D array of integers >= 0.

    Args:
        indices: which samples of the split to render.

    Returns:
        int64 array ``(B,)``.

    Examples:
        >>> check_indices([3, 0])
        array([3, 0])
    """
    idx = np.asarray(indices)
    check(idx.ndim == 1, "indices", idx.shape, "must be 1-D")
    check(idx.size == 0 or np.issubdtype(idx.dtype, np.integer), "indices", idx.dtype, "must be integers")
    check(idx.size == 0 or int(idx.min()) >= 0, "indices", idx.min() if idx.size else idx, "must be >= 0")
    return idx.astype(np.int64)


def sample_uniforms(seed: int, indices: np.ndarray, n: int) -> np.ndarray:
    """``n`` uniforms in [0, 1) per sample, a function of ``(seed, i)`` only.

    The package's one per-sample random scheme (:func:`fmlab.data.synthetic.rng.hash_uniform`,
    which ``canvas`` uses too), vectorised over the batch, with the seed checked.

    Args:
        seed: the split's seed (>= 0).
        indices: int64 ``(B,)`` sample indices.
        n: how many numbers each sample needs (always the same count, so draws never shift).

    Returns:
        float64 ``(B, n)``.

    Examples:
        >>> a = sample_uniforms(0, np.array([4, 7]), 3)
        >>> bool((a[1] == sample_uniforms(0, np.array([7]), 3)[0]).all())
        True
    """
    return hash_uniform(non_negative_int("seed", seed), indices, n)


def pick(u: np.ndarray, n: int) -> np.ndarray:
    """Map uniforms in [0, 1) to integers in ``[0, n)`` (int64)."""
    return np.minimum((u * n).astype(np.int64), n - 1)


def _filter_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Antialiased linear (triangle) resampling weights ``(n_out, n_in)``, rows summing to 1."""
    scale = n_in / n_out
    support = max(1.0, scale)
    centres = (np.arange(n_out) + 0.5) * scale - 0.5
    w = np.maximum(0.0, 1.0 - np.abs(np.arange(n_in)[None, :] - centres[:, None]) / support)
    return (w / w.sum(axis=1, keepdims=True)).astype(np.float32)


def resize_objects(objects: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Resize ``(M, h, w[, 3])`` images to ``(M, out_h, out_w[, 3])`` float32 with an antialiased linear filter.

    Separable, so one ``einsum`` per batch; a constant region stays exactly constant.

    Args:
        objects: images (any numeric dtype).
        out_h: output height.
        out_w: output width.

    Returns:
        float32 array in the input's value range.

    Examples:
        >>> resize_objects(np.full((1, 28, 28), 200, np.uint8), 16, 16).shape
        (1, 16, 16)
    """
    wy = _filter_matrix(objects.shape[1], out_h)
    wx = _filter_matrix(objects.shape[2], out_w)
    x = objects.astype(np.float32)
    if x.ndim == 4:
        return np.einsum("oh,nhwc,pw->nopc", wy, x, wx, optimize=True)
    return np.einsum("oh,nhw,pw->nop", wy, x, wx, optimize=True)


def alpha_of(objects: np.ndarray) -> np.ndarray:
    """Soft alpha in [0, 1] of ``(M, h, w[, 3])`` float objects: intensity (grey) or luminance (RGB) / 255."""
    lum = objects @ _LUMA if objects.ndim == 4 else objects
    return np.clip(lum / 255.0, 0.0, 1.0).astype(np.float32)


def ink_extent(alpha: np.ndarray) -> np.ndarray:
    """Tight ``[x0, y0, x1, y1)`` (int64 ``(M, 4)``) of the pixels with ``alpha > INK``; the whole image if none.

    Examples:
        >>> a = np.zeros((1, 5, 6), np.float32); a[0, 1:3, 2:5] = 1
        >>> ink_extent(a).tolist()
        [[2, 1, 5, 3]]
    """
    ink = alpha > INK
    cols, rows = ink.any(axis=1), ink.any(axis=2)
    h, w = alpha.shape[1:3]
    x0, x1 = cols.argmax(axis=1), w - cols[:, ::-1].argmax(axis=1)
    y0, y1 = rows.argmax(axis=1), h - rows[:, ::-1].argmax(axis=1)
    box = np.stack([x0, y0, x1, y1], axis=1).astype(np.int64)
    box[~cols.any(axis=1)] = (0, 0, w, h)
    return box


def paste_over(canvas: np.ndarray, patch: np.ndarray, alpha: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> None:
    """Composite premultiplied ``patch`` into ``canvas`` in place: ``canvas * (1 - alpha) + patch``.

    Args:
        canvas: float32 ``(M, H, W[, 3])``.
        patch: float32 ``(M, h, w[, 3])`` (zero where there is no object).
        alpha: float32 ``(M, h, w)``.
        ys: int ``(M,)`` top rows; the patch must lie inside the canvas.
        xs: int ``(M,)`` left columns.
    """
    m, h, w = alpha.shape
    rows = ys[:, None, None] + np.arange(h)[None, :, None]
    cols = xs[:, None, None] + np.arange(w)[None, None, :]
    ms = np.arange(m)[:, None, None]
    a = alpha[..., None] if canvas.ndim == 4 else alpha
    canvas[ms, rows, cols] = canvas[ms, rows, cols] * (1.0 - a) + patch


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Round and clip a float image to uint8."""
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def label_names(labels: np.ndarray, class_names: Sequence[str] | None) -> list[str]:
    """Names of integer ``labels``: ``class_names[label]`` when given, else ``str(label)``.

    Args:
        labels: int labels (any shape, flattened).
        class_names: optional names indexed by class id.

    Returns:
        one string per label.

    Examples:
        >>> label_names(np.array([1, 0]), ["cat", "dog"])
        ['dog', 'cat']
    """
    flat = np.asarray(labels).ravel().tolist()
    if class_names is None:
        return [str(v) for v in flat]
    bad = [v for v in flat if not 0 <= v < len(class_names)]
    check(not bad, "class_names", len(class_names), f"has no name for class {bad[:1]}")
    return [str(class_names[v]) for v in flat]
