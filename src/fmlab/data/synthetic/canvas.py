"""``canvas``: square canvases with 1..K coloured objects from a labelled pool, with boxes, masks and captions.

Every random choice of sample ``i`` is a counter-based hash of ``(seed, i, draw)``
(:func:`~fmlab.data.synthetic.rng.hash_uniform`), so a batch renders exactly the pixels that
rendering its samples one by one would, and the layout (labels, captions) is known without
painting a pixel. Painting is vectorised over the batch: each object is resampled (nearest
neighbour) into a fixed ``P x P`` patch lying inside the canvas, and its non-zero alpha pixels only are
alpha-composited through flat gather/scatter indices, one object slot at a time; later slots lie
on top.
"""

from __future__ import annotations

import numpy as np

from fmlab.data.synthetic.background import check_clutter, paint_distractors, render_background
from fmlab.data.synthetic.registry import register_synthetic
from fmlab.data.synthetic.rng import hash_uniform
from fmlab.utils.validation import check, finite_float, int_at_least, positive_int

PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (230, 40, 40), "green": (40, 200, 60), "blue": (50, 90, 240), "yellow": (240, 220, 40),
    "cyan": (40, 220, 230), "magenta": (220, 50, 220), "white": (245, 245, 245),
}
COLOURS = list(PALETTE)
_RGB = np.array(list(PALETTE.values()), dtype=np.float32)
SIZES = ("small", "large")
TEMPLATES = ("{}", "a picture of {}", "there is {}", "a canvas with {}")
_DRAWS = 6  # per object slot: pool row, colour, size, scale jitter, x, y


def _check_params(size: int, max_objects: int, noise: float, threshold: float) -> tuple[int, int, float, float]:
    size = int_at_least("size", size, 16)
    check(size <= 1024, "size", size, "must be <= 1024")
    max_objects = positive_int("max_objects", max_objects)
    check(max_objects <= 8, "max_objects", max_objects, "must be <= 8")
    noise = finite_float("noise", noise, low=0.0, high=1.0)
    threshold = finite_float("threshold", threshold, low=0.0, high=1.0, low_open=True)
    check(threshold < 1.0, "threshold", threshold, "must be < 1")
    return size, max_objects, noise, threshold


def canvas_layout(pool_labels: np.ndarray, indices: np.ndarray, seed: int, size: int = 64,
                  max_objects: int = 3, **_: object) -> dict[str, np.ndarray]:
    """The random choices of each sample (no pixels): objects, colours, sizes, positions.

    Args:
        pool_labels: (N,) class label of each pool object.
        indices: which samples of the split.
        seed: the split's seed.
        size: canvas side in pixels.
        max_objects: objects per canvas are uniform in ``1..max_objects``.

    Returns:
        ``n_objects`` (B,), ``pool_index``/``labels``/``colours``/``sizes`` (B, K) (``-1`` beyond
        ``n_objects``), ``side``/``x0``/``y0`` (B, K) object square and its top-left corner,
        ``template`` (B,).

    Examples:
        >>> lay = canvas_layout(np.arange(10), np.arange(4), seed=0)
        >>> lay["labels"].shape, bool((lay["n_objects"] >= 1).all())
        ((4, 3), True)
    """
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    n_pool = int(len(pool_labels))
    check(n_pool > 0, "objects", n_pool, "pool has no images")
    k = max_objects
    u = hash_uniform(seed, idx, 2 + _DRAWS * k)
    n_obj = 1 + np.minimum((u[:, 0] * k).astype(np.int64), k - 1)
    slot = u[:, 2:].reshape(len(idx), k, _DRAWS)
    active = np.arange(k)[None, :] < n_obj[:, None]
    pool_index = np.minimum((slot[..., 0] * n_pool).astype(np.int64), n_pool - 1)
    colours = np.minimum((slot[..., 1] * len(COLOURS)).astype(np.int64), len(COLOURS) - 1)
    sizes = (slot[..., 2] >= 0.5).astype(np.int64)
    frac = np.where(sizes == 1, 0.48 + 0.1 * slot[..., 3], 0.26 + 0.08 * slot[..., 3])
    side = np.maximum(np.rint(frac * size).astype(np.int64), 4)
    x0 = (slot[..., 4] * (size - side + 1)).astype(np.int64)
    y0 = (slot[..., 5] * (size - side + 1)).astype(np.int64)
    labels = np.asarray(pool_labels, dtype=np.int64)[pool_index]
    neg = np.int64(-1)
    return {"n_objects": n_obj, "active": active, "pool_index": np.where(active, pool_index, neg),
            "labels": np.where(active, labels, neg), "colours": np.where(active, colours, neg),
            "sizes": np.where(active, sizes, neg), "side": side, "x0": x0, "y0": y0,
            "template": np.minimum((u[:, 1] * len(TEMPLATES)).astype(np.int64), len(TEMPLATES) - 1)}


def _relation(lay: dict, b: int, i: int, j: int) -> str:
    """Where object ``i`` lies relative to object ``j`` (centres; the larger offset wins)."""
    ci = (lay["x0"][b, i] + lay["side"][b, i] / 2, lay["y0"][b, i] + lay["side"][b, i] / 2)
    cj = (lay["x0"][b, j] + lay["side"][b, j] / 2, lay["y0"][b, j] + lay["side"][b, j] / 2)
    dx, dy = ci[0] - cj[0], ci[1] - cj[1]
    if abs(dx) >= abs(dy):
        return "left of" if dx < 0 else "right of"
    return "above" if dy < 0 else "below"


def canvas_captions(lay: dict, class_names: list[str]) -> list[str]:
    """One caption per sample naming every object ("a small red 3 left of a large blue 7").

    Args:
        lay: a :func:`canvas_layout` result.
        class_names: names of the pool's labels.

    Returns:
        A list of B captions.

    Examples:
        >>> lay = canvas_layout(np.arange(10), np.arange(2), seed=0)
        >>> all(c.count(" a ") + c.startswith("a ") >= 1 for c in canvas_captions(lay, list("0123456789")))
        True
    """
    out = []
    for b in range(len(lay["n_objects"])):
        n = int(lay["n_objects"][b])
        names = [f"a {SIZES[lay['sizes'][b, i]]} {COLOURS[lay['colours'][b, i]]} "
                 f"{class_names[lay['labels'][b, i]]}" for i in range(n)]
        text = names[0]
        if n >= 2:
            text = f"{names[0]} {_relation(lay, b, 0, 1)} {names[1]}"
        if n >= 3:
            text += ", and " + ", ".join(names[2:])
        out.append(TEMPLATES[lay["template"][b]].format(text))
    return out


def _object_patches(pool_images: np.ndarray, lay: dict, k: int, sel: np.ndarray, patch: int,
                    off_y: np.ndarray, off_x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Alpha (n,P,P) and colour (n,P,P,3) or (n,1,1,3) of slot ``k`` of the samples ``sel``: the
    object resampled to its side, starting ``(off_y, off_x)`` pixels into the patch (so the patch
    stays inside the canvas)."""
    h, w = pool_images.shape[1:3]
    side = lay["side"][sel, k, None]
    r = np.arange(patch)[None, :]
    ry, rx = r - off_y[:, None], r - off_x[:, None]
    rows = np.clip(ry * h // side, 0, h - 1)
    cols = np.clip(rx * w // side, 0, w - 1)
    in_y, in_x = (ry >= 0) & (ry < side), (rx >= 0) & (rx < side)
    pool_row = lay["pool_index"][sel, k]
    obj = pool_images[pool_row[:, None, None], rows[:, :, None], cols[:, None, :]]
    colour = _RGB[lay["colours"][sel, k]]
    if obj.ndim == 4:  # RGB objects: luminance is the alpha, the colour tints the object
        rgb = obj.astype(np.float32)
        alpha = rgb @ np.array([0.299, 0.587, 0.114], np.float32) / 255.0
        fill = rgb * (colour[:, None, None, :] / 255.0)
    else:
        alpha = obj.astype(np.float32) / 255.0
        fill = colour[:, None, None, :]
    alpha *= (in_y[:, :, None] & in_x[:, None, :])
    return alpha, fill


@register_synthetic("canvas", layout=canvas_layout, captions=canvas_captions,
                    params={"size": 64, "max_objects": 3, "noise": 0.0, "threshold": 0.5,
                            "background": "none", "distractors": 0},
                    description="CxC canvases with 1..K coloured objects, boxes, masks, captions")
def render_canvas(pool_images: np.ndarray, pool_labels: np.ndarray, indices: np.ndarray, seed: int,
                  size: int = 64, max_objects: int = 3, noise: float = 0.0, threshold: float = 0.5,
                  background: str = "none", distractors: int = 0, class_names: list[str] | None = None) -> dict:
    """Render canvases ``indices`` of the split ``seed`` over an object pool.

    Args:
        pool_images: uint8 (N, h, w) or (N, h, w, 3) objects; alpha = intensity (luminance).
        pool_labels: (N,) their class labels.
        indices: samples to render; sample ``i`` depends only on ``(seed, i)`` and the pool.
        seed: the split's seed.
        size: canvas side ``S`` (>= 16).
        max_objects: ``K``, objects per canvas uniform in ``1..K`` (<= 8).
        noise: amplitude of uniform grey background noise in [0, 1] (0: black background).
        threshold: alpha above which a pixel belongs to an object (masks and boxes).
        background: ``"none"`` (black), ``"gradient"`` or ``"texture"``: a seeded background
            (:mod:`~fmlab.data.synthetic.background`); the grey ``noise`` adds on top of it.
        distractors: random strokes/blobs per canvas (0..32), painted under the objects and absent
            from boxes, labels, masks and captions. Neither changes the layout, boxes or masks.
        class_names: names for the captions (default: the label numbers).

    Returns:
        ``images`` uint8 (B,S,S,3); ``boxes`` float32 (B,K,4) xyxy in pixel edges (tight box of
        the object's alpha > threshold, before occlusion; -1 padding); ``labels``, ``colours``,
        ``sizes`` int64 (B,K) (-1 padding; colour/size index into ``COLOURS``/``SIZES``);
        ``masks`` uint8 (B,S,S) instance ids (object ``k`` is ``k+1`` where it is top-most
        above threshold; 0 background); ``n_objects`` (B,); ``captions`` list of B str.

    Examples:
        >>> pool = np.zeros((4, 8, 8), np.uint8); pool[:, 2:6, 2:6] = 255
        >>> out = render_canvas(pool, np.arange(4), np.arange(3), seed=0, size=32)
        >>> out["images"].shape, out["masks"].shape, out["boxes"].shape, len(out["captions"])
        ((3, 32, 32, 3), (3, 32, 32), (3, 3, 4), 3)
    """
    size, max_objects, noise, threshold = _check_params(size, max_objects, noise, threshold)
    background, distractors = check_clutter(background, distractors)
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    lay = canvas_layout(pool_labels, idx, seed, size, max_objects)
    b, patch = len(idx), int(np.ceil(0.58 * size)) + 1  # the largest object side fits a patch
    bg = render_background(background, seed, idx, size)
    canvas = np.zeros((b, size, size, 3), np.float32) if bg is None else np.ascontiguousarray(bg, np.float32)
    if noise > 0:
        canvas += (noise * 255.0 * hash_noise(seed, idx, size))[..., None]
        if bg is not None:  # background + noise may pass 255 (alone, each stays <= 255)
            np.minimum(canvas, 255.0, out=canvas)
    paint_distractors(canvas, seed, idx, distractors)
    masks = np.zeros((b, size, size), np.uint8)
    boxes = np.full((b, max_objects, 4), -1.0, np.float32)
    flat, flat_m = canvas.reshape(-1, 3), masks.reshape(-1)
    start_y, start_x = np.minimum(lay["y0"], size - patch), np.minimum(lay["x0"], size - patch)
    for k in range(max_objects):
        sel = np.flatnonzero(lay["active"][:, k])  # canvases with more than k objects
        sy, sx = start_y[sel, k], start_x[sel, k]
        alpha, fill = _object_patches(pool_images, lay, k, sel, patch, lay["y0"][sel, k] - sy,
                                      lay["x0"][sel, k] - sx)
        bb, py, px = np.nonzero(alpha)  # paint only the object's own pixels (~10% of the patch)
        pos = (sel[bb] * size + sy[bb] + py) * size + sx[bb] + px
        a = alpha[bb, py, px][:, None]
        colour = fill[bb, py, px] if fill.shape[1] > 1 else fill[bb, 0, 0]
        flat[pos] += a * (colour - flat[pos])
        flat_m[pos[a[:, 0] > threshold]] = k + 1
        boxes[sel, k] = _tight_boxes(alpha > threshold, sx, sy)
    images = np.rint(canvas).astype(np.uint8)
    names = class_names or [str(i) for i in range(int(np.max(pool_labels)) + 1)]
    return {"images": images, "boxes": boxes, "labels": lay["labels"], "colours": lay["colours"],
            "sizes": lay["sizes"], "masks": masks,
            "n_objects": lay["n_objects"], "captions": canvas_captions(lay, names)}


def _tight_boxes(on: np.ndarray, x0: np.ndarray, y0: np.ndarray) -> np.ndarray:
    """xyxy boxes (pixel edges) of the True pixels of each (P,P) patch; -1 where there are none."""
    rows, cols = on.any(axis=2), on.any(axis=1)
    p = on.shape[1]
    y1, y2 = rows.argmax(1), p - rows[:, ::-1].argmax(1)
    x1, x2 = cols.argmax(1), p - cols[:, ::-1].argmax(1)
    box = np.stack([x0 + x1, y0 + y1, x0 + x2, y0 + y2], axis=1).astype(np.float32)
    box[~rows.any(1)] = -1.0
    return box


def hash_noise(seed: int, indices: np.ndarray, size: int) -> np.ndarray:
    """(B, S, S) uniform [0, 1) background noise of each sample (a stream apart from the layout)."""
    return hash_uniform(seed, indices, size * size, stream=1).reshape(len(indices), size, size).astype(np.float32)


def semantic_mask(masks: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Class map from an instance mask: ``label + 1`` of the top-most object, 0 for background.

    Args:
        masks: (B,S,S) instance ids from :func:`render_canvas`.
        labels: (B,K) the objects' labels (-1 padding).

    Returns:
        int64 (B,S,S).

    Examples:
        >>> semantic_mask(np.array([[[0, 1], [2, 2]]]), np.array([[7, 3]])).tolist()
        [[[0, 8], [4, 4]]]
    """
    table = np.concatenate([np.zeros((len(labels), 1), np.int64), np.asarray(labels, np.int64) + 1], axis=1)
    return np.take_along_axis(table, masks.reshape(len(masks), -1).astype(np.int64), axis=1).reshape(masks.shape)
