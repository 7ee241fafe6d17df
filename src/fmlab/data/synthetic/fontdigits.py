"""``fontdigits``: digits 0–9 rendered from the TrueType fonts matplotlib ships (DejaVu, STIX,
Computer Modern), with exact labels and boxes — ParGANDA's "synthetic objects" for MNIST.

Each sample's class, font, height, rotation, stroke weight and position are counter-based hashes of
``(seed, index)`` (:func:`~fmlab.data.synthetic.rng.hash_uniform`), so a sample is the same pixels
however it is batched and the labels are known without rendering (:func:`fontdigits_layout`).
A glyph is drawn white on black at 4× the output side, rotated, scaled to its height, placed,
and box-filtered down (anti-aliased edges like a scanned digit, but thin, even strokes —
the domain gap the translator has to close). The box is the ink's tight box at 4× divided by 4
(xyxy in output pixel edges). The ``objects`` pool only names the classes (use ``mnist``): no
pool pixel is drawn.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from fmlab.data.synthetic.registry import register_synthetic
from fmlab.data.synthetic.rng import hash_uniform
from fmlab.errors import DataError
from fmlab.utils.validation import check, finite_float, int_at_least

# DejaVu (12 faces), STIX (4) and Computer Modern (4): every face has the ten digits
FONT_FILES = (
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSans-BoldOblique.ttf",
    "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf", "DejaVuSerif-BoldItalic.ttf",
    "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf", "DejaVuSansMono-Oblique.ttf",
    "DejaVuSansMono-BoldOblique.ttf", "STIXGeneral.ttf", "STIXGeneralBol.ttf",
    "STIXGeneralItalic.ttf", "STIXGeneralBolIta.ttf", "cmr10.ttf", "cmss10.ttf", "cmtt10.ttf",
    "cmb10.ttf",
)
_UP = 4          # supersampling factor
_DRAWS = 7       # class, font, height, rotation, stroke, x, y


def font_dir() -> Path:
    """Folder of matplotlib's bundled TrueType fonts (the matplotlib wheel from PyPI)."""
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


@functools.lru_cache(maxsize=256)
def _font(name: str, px: int):  # noqa: ANN202 - PIL.ImageFont.FreeTypeFont
    from PIL import ImageFont

    path = font_dir() / name
    if not path.is_file():
        raise DataError(f"fontdigits: font {path} not found (is matplotlib installed?)")
    return ImageFont.truetype(str(path), px)


def fontdigits_layout(pool_labels: np.ndarray, indices: np.ndarray, seed: int, size: int = 28,
                      min_height: float = 0.55, max_height: float = 0.85, max_rotation: float = 15.0,
                      **_: object) -> dict[str, np.ndarray]:
    """Each sample's random choices (no pixels): ``label``, ``font``, ``height`` (fraction of the
    side), ``rotation`` (degrees), ``stroke`` (px at 4×), ``fx``/``fy`` (placement in [0, 1)).

    Examples:
        >>> lay = fontdigits_layout(np.arange(10), np.arange(5), seed=0)
        >>> lay["label"].shape, bool((lay["label"] < 10).all())
        ((5,), True)
    """
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    u = hash_uniform(seed, idx, _DRAWS)
    return {"label": np.minimum((u[:, 0] * 10).astype(np.int64), 9),
            "font": np.minimum((u[:, 1] * len(FONT_FILES)).astype(np.int64), len(FONT_FILES) - 1),
            "height": min_height + (max_height - min_height) * u[:, 2],
            "rotation": max_rotation * (2.0 * u[:, 3] - 1.0),
            "stroke": np.minimum((u[:, 4] * 3).astype(np.int64), 2),
            "fx": u[:, 5], "fy": u[:, 6]}


def _glyph(digit: int, font: str, big: int, height: float, rotation: float, stroke: int):  # noqa: ANN202
    """The digit's ink as a tightly cropped PIL 'L' image, ``height·big`` px tall."""
    from PIL import Image, ImageDraw

    canvas = Image.new("L", (2 * big, 2 * big), 0)
    ImageDraw.Draw(canvas).text((big, big), str(digit), fill=255, anchor="mm",
                                font=_font(font, big), stroke_width=stroke, stroke_fill=255)
    canvas = canvas.rotate(rotation, resample=Image.BICUBIC)
    ink = canvas.crop(canvas.getbbox())
    w, h = ink.size
    scale = min(height * big / h, 0.9 * big / w)
    return ink.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.LANCZOS)


@register_synthetic("fontdigits", layout=fontdigits_layout,
                    params={"size": 28, "min_height": 0.55, "max_height": 0.85,
                            "max_rotation": 15.0},
                    description="digits 0-9 drawn from matplotlib's DejaVu/STIX/CM fonts, white on "
                                "black, random face/size/rotation/stroke/position, exact boxes")
def render_fontdigits(pool_images: np.ndarray, pool_labels: np.ndarray, indices: np.ndarray,
                      seed: int, size: int = 28, min_height: float = 0.55, max_height: float = 0.85,
                      max_rotation: float = 15.0) -> dict:
    """Render samples ``indices``: ``images`` uint8 (B, S, S), ``label`` (B,), ``boxes`` (B, 1, 4).

    Examples:
        >>> out = render_fontdigits(None, None, np.arange(3), seed=0)
        >>> out["images"].shape, out["images"].dtype, out["boxes"].shape
        ((3, 28, 28), dtype('uint8'), (3, 1, 4))
    """
    from PIL import Image

    size = int_at_least("size", size, 8)
    check(size <= 256, "size", size, "must be <= 256")
    min_height = finite_float("min_height", min_height, low=0.1, high=1.0)
    max_height = finite_float("max_height", max_height, low=min_height, high=1.0)
    max_rotation = finite_float("max_rotation", max_rotation, low=0.0, high=90.0)
    lay = fontdigits_layout(pool_labels, indices, seed, size, min_height, max_height, max_rotation)
    big = size * _UP
    n = len(lay["label"])
    images = np.zeros((n, size, size), np.uint8)
    boxes = np.zeros((n, 1, 4), np.float32)
    for i in range(n):
        g = _glyph(int(lay["label"][i]), FONT_FILES[lay["font"][i]], big, float(lay["height"][i]),
                   float(lay["rotation"][i]), int(lay["stroke"][i]))
        w, h = g.size
        x0 = int(lay["fx"][i] * (big - w + 1))
        y0 = int(lay["fy"][i] * (big - h + 1))
        canvas = Image.new("L", (big, big), 0)
        canvas.paste(g, (x0, y0))
        images[i] = np.asarray(canvas.reduce(_UP))
        bx = canvas.getbbox() or (x0, y0, x0 + w, y0 + h)
        boxes[i, 0] = np.asarray(bx, np.float32) / _UP
    return {"images": images, "label": lay["label"], "labels": lay["label"][:, None],
            "boxes": boxes}
