"""Measurable image attributes and the templated captions built from them (issue 23).

Text-conditioned generators need captions whose content can be checked on the generated image:
the class, and attributes computed from pixels, not annotated. For a digit (grayscale, ink bright
on dark):

- **thickness**: mean stroke width ≈ ink area / half the ink perimeter (for a stroke of length L
  and width w, area ≈ L·w and perimeter ≈ 2L), in pixels;
- **slant**: the shear of the ink's second moments, μ₁₁/μ₀₂ with x to the right and y *up*:
  > 0 when the top of the digit leans right (italic), < 0 when it leans left;
- **brightness**: mean intensity of the ink pixels (a faint or a bold pen).

For colour images: **brightness** is the mean luminance and **colour** the name of the hue of
the mean saturated pixel. :class:`AttributeBinner` turns each attribute into a word by terciles
fitted on TRAINING images only (so test captions use the train thresholds), and
:func:`template_captions` writes seeded captions such as "a thick digit seven slanted to the right".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from fmlab.errors import DataError

__all__ = ["AttributeBinner", "colour_names", "digit_attributes", "template_captions"]

WORDS = {"thickness": ("thin", "medium", "thick"),
         "slant": ("slanted to the left", "upright", "slanted to the right"),
         "brightness": ("faint", "grey", "bright")}
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
HUES = ((15, "red"), (45, "orange"), (70, "yellow"), (165, "green"), (200, "cyan"), (260, "blue"),
        (320, "purple"), (345, "pink"), (360, "red"))


def _as_unit_gray(images: np.ndarray) -> np.ndarray:
    x = np.asarray(images)
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim != 3:
        raise DataError(f"digit attributes need (N, H, W) grayscale images, got shape {x.shape}")
    return x.astype(np.float64) / 255.0 if x.dtype == np.uint8 else x.astype(np.float64)


def digit_attributes(images: np.ndarray, threshold: float = 0.5) -> dict[str, np.ndarray]:
    """Thickness (px), slant (shear) and brightness of each digit image.

    Args:
        images: (N, H, W) uint8 or floats in [0, 1]; ink bright on a dark background.
        threshold: intensity above which a pixel is ink.

    Returns:
        ``{"thickness", "slant", "brightness"}``, each (N,) float64 (NaN for an image with no ink).
    """
    x = _as_unit_gray(images)
    ink = x > threshold
    area = ink.sum(axis=(1, 2)).astype(np.float64)
    pad = np.pad(ink, ((0, 0), (1, 1), (1, 1)))
    edges = (np.abs(np.diff(pad, axis=1)).sum(axis=(1, 2)) + np.abs(np.diff(pad, axis=2)).sum(axis=(1, 2)))
    with np.errstate(invalid="ignore", divide="ignore"):
        thickness = area / (edges / 2.0)
        h, w = x.shape[1:]
        ys, xs = np.mgrid[0:h, 0:w]
        yup = (h - 1 - ys).astype(np.float64)            # y up, so "leans right" is positive
        wts = ink.astype(np.float64)
        mx = (wts * xs).sum(axis=(1, 2)) / area
        my = (wts * yup).sum(axis=(1, 2)) / area
        dx, dy = xs[None] - mx[:, None, None], yup[None] - my[:, None, None]
        slant = (wts * dx * dy).sum(axis=(1, 2)) / (wts * dy * dy).sum(axis=(1, 2))
        brightness = (x * ink).sum(axis=(1, 2)) / area
    return {"thickness": thickness, "slant": slant, "brightness": brightness}


def colour_names(images: np.ndarray, min_saturation: float = 0.2) -> list[str]:
    """The hue name of the mean colour of each image's saturated pixels ("grey" when none).

    Args:
        images: (N, H, W, 3) uint8 RGB.
        min_saturation: HSV saturation above which a pixel counts as coloured.
    """
    x = np.asarray(images)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise DataError(f"colour names need (N, H, W, 3) RGB images, got shape {x.shape}")
    rgb = x.astype(np.float64) / 255.0
    mx, mn = rgb.max(-1), rgb.min(-1)
    sat = np.where(mx > 0, (mx - mn) / np.maximum(mx, 1e-12), 0.0)
    names = []
    for img, s in zip(rgb, sat):
        sel = img[s > min_saturation]
        if len(sel) < 0.05 * s.size:
            names.append("grey")
            continue
        r, g, b = sel.mean(0)
        hue = (np.degrees(np.arctan2(np.sqrt(3) * (g - b), 2 * r - g - b)) + 360.0) % 360.0
        names.append(next(name for bound, name in HUES if hue <= bound))
    return names


@dataclass
class AttributeBinner:
    """Tercile thresholds per attribute, fitted on training images, mapping values to words."""

    edges: dict[str, tuple[float, float]] = field(default_factory=dict)

    def fit(self, attributes: dict[str, np.ndarray]) -> AttributeBinner:
        """Learn the 1/3 and 2/3 quantiles of each attribute (NaNs ignored)."""
        for name, v in attributes.items():
            if name not in WORDS:
                raise DataError(f"attribute {name!r} has no words; known: {sorted(WORDS)}")
            v = np.asarray(v, dtype=np.float64)
            if not np.isfinite(v).any():
                raise DataError(f"attribute {name!r}: no finite values to fit terciles on")
            lo, hi = np.nanquantile(v, [1 / 3, 2 / 3])
            self.edges[name] = (float(lo), float(hi))
        return self

    def bins(self, attributes: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """(N,) int bins 0/1/2 per fitted attribute (NaN → the middle bin)."""
        if not self.edges:
            raise DataError("AttributeBinner: call fit() on training attributes first")
        out = {}
        for name, (lo, hi) in self.edges.items():
            v = np.nan_to_num(np.asarray(attributes[name], dtype=np.float64), nan=(lo + hi) / 2)
            out[name] = np.digitize(v, [lo, hi], right=False)
        return out

    def words(self, attributes: dict[str, np.ndarray]) -> dict[str, list[str]]:
        """The word of each image's bin per attribute."""
        return {n: [WORDS[n][int(b)] for b in bs] for n, bs in self.bins(attributes).items()}


TEMPLATES = (
    "a {thickness} digit {digit} {slant}",
    "the digit {digit} written with a {thickness} {brightness} stroke, {slant}",
    "a {brightness} {digit}, {thickness} and {slant}",
    "handwritten {digit} in a {thickness} {brightness} pen, {slant}",
)


def template_captions(labels: Sequence[int], words: dict[str, list[str]], seed: int,
                      class_names: Sequence[str] = NUMBER_WORDS,
                      templates: Sequence[str] = TEMPLATES) -> list[str]:
    """One caption per image from a seeded template choice.

    Args:
        labels: class index per image.
        words: attribute words per image (:meth:`AttributeBinner.words`); every placeholder a
            template uses besides ``{digit}`` must be a key.
        seed: the template draw's seed (same seed, same captions).
        class_names: the word for each class.
        templates: format strings with ``{digit}`` and attribute placeholders.
    """
    n = len(labels)
    for k, v in words.items():
        if len(v) != n:
            raise DataError(f"template captions: {len(v)} {k} words for {n} labels")
    pick = np.random.default_rng(seed).integers(0, len(templates), size=n)
    out = []
    for i, (y, t) in enumerate(zip(labels, pick)):
        fields = {k: v[i] for k, v in words.items()}
        try:
            out.append(templates[t].format(digit=class_names[int(y)], **fields))
        except KeyError as e:
            raise DataError(f"template {templates[t]!r} needs attribute {e.args[0]!r}") from None
    return out
