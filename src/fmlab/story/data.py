"""Stories of styled digits for story continuation (StoryDALL-E, reduced; papers.md #48).

A story is ``F`` frames of one *style* — a pen colour from the ``canvas`` palette and a stroke
thickness (thin as written, medium and thick dilated) — drawn on MNIST digits of the split's pool.
Frame 0 is the *source frame*; the captions of the later frames name only the digit
("then a four"), so a model can get the style right only by looking at the source frame: what
StoryDALL-E's cross-attention to the source frame is for. Single frames for text-to-image
pre-training carry the full caption ("a thick red seven"), so the pre-trained model knows the
style words but the story captions never say them.

The style of a generated frame is *measured* (hue name by :func:`fmlab.data.attributes.colour_names`,
stroke width by :func:`fmlab.data.attributes.digit_attributes` binned at thresholds fitted on
training frames), never read from the generator's inputs.
"""

from __future__ import annotations

import numpy as np

from fmlab.data.attributes import NUMBER_WORDS
from fmlab.data.synthetic.canvas import PALETTE
from fmlab.errors import DataError
from fmlab.utils.validation import positive_int

__all__ = ["STORY_COLOURS", "THICKNESS", "frame_captions", "render_stories", "style_frames"]

STORY_COLOURS = ("red", "green", "blue", "yellow", "cyan", "magenta")
THICKNESS = ("thin", "medium", "thick")
_RGB = np.array([PALETTE[c] for c in STORY_COLOURS], dtype=np.float32) / 255.0


_CROSS = ((1, 1), (0, 1), (2, 1), (1, 0), (1, 2))
_SQUARE = tuple((i, j) for i in range(3) for j in range(3))


def _dilate(x: np.ndarray, offsets: tuple[tuple[int, int], ...]) -> np.ndarray:
    """Grey dilation of (N, H, W) intensities by a 3×3 structuring element (its ``offsets``)."""
    pad = np.pad(x, ((0, 0), (1, 1), (1, 1)), constant_values=0.0)
    h, w = x.shape[1:]
    return np.max([pad[:, i:i + h, j:j + w] for i, j in offsets], axis=0)


def style_frames(digits: np.ndarray, colour: np.ndarray, thickness: np.ndarray) -> np.ndarray:
    """Uint8 RGB frames (N, H, W, 3): each grey digit's stroke widened, then inked in its colour.

    thin = the digit as written; medium = dilated by a 3×3 cross; thick = dilated by a 3×3 square,
    then a cross (on MNIST the measured stroke widths, 5–95 %: 1.3–2.8, 2.7–4.3, 4.6–6.7 px; an
    eroded "thin" would wipe out the faint digits).

    Examples:
        >>> d = np.zeros((1, 5, 5), np.uint8); d[0, 2, 1:4] = 255
        >>> f = style_frames(d, np.array([0]), np.array([2]))
        >>> f.shape, int((f[0, ..., 0] > 0).sum()), f[0, 2, 2].tolist()   # a red stroke, dilated
        ((1, 5, 5, 3), 25, [230, 40, 40])
    """
    x = np.asarray(digits, dtype=np.float32) / 255.0
    if x.ndim != 3:
        raise DataError(f"style_frames: digits must be (N, H, W), got {x.shape}")
    thickness = np.asarray(thickness)
    out = x.copy()
    out[thickness == 1] = _dilate(x[thickness == 1], _CROSS)
    out[thickness == 2] = _dilate(_dilate(x[thickness == 2], _SQUARE), _CROSS)
    rgb = out[..., None] * _RGB[np.asarray(colour)][:, None, None, :]
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)


def frame_captions(digits: np.ndarray, colour: np.ndarray | None = None,
                   thickness: np.ndarray | None = None) -> list[str]:
    """"then a four" (story frames), or "a thick red four" when the style is given (single frames).

    Examples:
        >>> frame_captions(np.array([4]))
        ['then a four']
        >>> frame_captions(np.array([7]), np.array([0]), np.array([2]))
        ['a thick red seven']
    """
    digits = np.asarray(digits).ravel()
    if colour is None:
        return [f"then a {NUMBER_WORDS[int(d)]}" for d in digits]
    return [f"a {THICKNESS[int(t)]} {STORY_COLOURS[int(c)]} {NUMBER_WORDS[int(d)]}"
            for d, c, t in zip(digits, np.asarray(colour).ravel(), np.asarray(thickness).ravel(),
                               strict=True)]


def render_stories(images: np.ndarray, labels: np.ndarray, n: int, seed: int,
                   frames: int = 4) -> dict[str, np.ndarray]:
    """``n`` stories of ``frames`` frames from a pool of grey digits (seeded).

    Every frame of a story has the story's colour and thickness; its digit image is drawn from the
    pool at random (so a digit class may repeat within a story).

    Returns:
        ``frames`` uint8 (n, F, H, W, 3), ``digits`` int64 (n, F), ``colour`` and ``thickness``
        int64 (n,) (the story's style).
    """
    n, frames = positive_int("n", n), positive_int("frames", frames)
    if len(images) == 0 or len(images) != len(labels):
        raise DataError(f"render_stories: need a non-empty pool with one label per image, got "
                        f"{len(images)} images and {len(labels)} labels")
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, len(images), size=(n, frames))
    colour = rng.integers(0, len(STORY_COLOURS), size=n)
    thickness = rng.integers(0, len(THICKNESS), size=n)
    flat = style_frames(np.asarray(images)[rows.ravel()], np.repeat(colour, frames),
                        np.repeat(thickness, frames))
    return {"frames": flat.reshape(n, frames, *flat.shape[1:]),
            "digits": np.asarray(labels)[rows].astype(np.int64),
            "colour": colour.astype(np.int64), "thickness": thickness.astype(np.int64)}
