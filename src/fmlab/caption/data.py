"""Captioned MNIST for unpaired captioning (CgT-GAN, papers.md #14): disjoint blocks of one split.

CgT-GAN learns from images and sentences that do NOT describe each other. The MNIST training set
is permuted once (``split_seed``) and cut into four disjoint blocks:

- ``clip``: images WITH their templated captions — the only paired data; it trains the small
  image-text model (the stand-in for CLIP, which is also pre-trained on other people's pairs);
- ``images``: the captioner's training images, their captions never built;
- ``corpus``: the *external* caption corpus — captions of other images, shuffled, images dropped;
  the text discriminator's real sentences and the CLIP-agg sentence pool;
- ``lm``: captions of yet other images, a reference-free corpus for the reference language model
  that scores perplexity (not the corpus the discriminator saw).

Training captions use :data:`fmlab.data.attributes.TEMPLATES`. Test references (several per test
image) use :data:`REF_TEMPLATES`, phrasings never used in training, so BLEU/CIDEr-D measure
content and word choice, not a memorised template. Attribute words come from terciles fitted on
the ``clip`` block.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fmlab.data.attributes import NUMBER_WORDS, AttributeBinner, digit_attributes, template_captions
from fmlab.errors import DataError

__all__ = ["BLOCKS", "REF_TEMPLATES", "CaptionSplits", "attribute_accuracy", "build_caption_splits", "digit_word_of"]

BLOCKS = ("clip", "images", "corpus", "lm")
REF_TEMPLATES = (
    "a {digit} that is {thickness} , {brightness} and {slant}",
    "an image of the number {digit} , {slant} , drawn {thickness}",
    "{thickness} {brightness} handwriting of a {digit} {slant}",
)


@dataclass
class CaptionSplits:
    """The blocks of :func:`build_caption_splits` (uint8 images, int labels, caption strings)."""

    images: dict[str, np.ndarray] = field(default_factory=dict)  # clip, images, test
    labels: dict[str, np.ndarray] = field(default_factory=dict)  # clip, images, test
    captions: dict[str, list[str]] = field(default_factory=dict)  # clip (paired), corpus, lm
    references: list[list[str]] = field(default_factory=list)  # per test image
    test_words: dict[str, list[str]] = field(default_factory=dict)  # attribute words of each test image


def _block_sizes(sizes: dict[str, int], n_train: int) -> list[int]:
    missing = [b for b in BLOCKS if b not in sizes]
    if missing:
        raise DataError(f"caption splits: no size for block(s) {missing}")
    bad = {b: sizes[b] for b in BLOCKS if int(sizes[b]) < 1}
    if bad:
        raise DataError(f"caption splits: block sizes must be >= 1, got {bad} (an empty corpus "
                        "or image set cannot train a captioner)")
    total = sum(int(sizes[b]) for b in BLOCKS)
    if total > n_train:
        raise DataError(f"caption splits: blocks need {total} training images, the split has "
                        f"{n_train}")
    return [int(sizes[b]) for b in BLOCKS]


def build_caption_splits(train_images: np.ndarray, train_labels: np.ndarray,
                         test_images: np.ndarray, test_labels: np.ndarray,
                         sizes: dict[str, int], n_test: int, split_seed: int) -> CaptionSplits:
    """Cut the training split into the disjoint :data:`BLOCKS` and caption what each block needs.

    Args:
        train_images: (N, 28, 28) uint8 training digits; ``train_labels`` their classes.
        test_images: (M, 28, 28) uint8 test digits; ``test_labels`` their classes.
        sizes: images per block (``clip``, ``images``, ``corpus``, ``lm``).
        n_test: the first ``n_test`` test images are evaluated.
        split_seed: seed of the permutation and of the template draws.

    Returns:
        The :class:`CaptionSplits`; the corpus captions are shuffled once more, so their order
        says nothing about which image they came from.
    """
    counts = _block_sizes(sizes, len(train_images))
    if not 1 <= n_test <= len(test_images):
        raise DataError(f"caption splits: test_images must be in [1, {len(test_images)}], "
                        f"got {n_test}")
    rng = np.random.default_rng(split_seed)
    perm = rng.permutation(len(train_images))
    bounds = np.cumsum([0] + counts)
    rows = {b: perm[bounds[i]:bounds[i + 1]] for i, b in enumerate(BLOCKS)}
    binner = AttributeBinner().fit(digit_attributes(train_images[rows["clip"]]))
    out = CaptionSplits()
    for k, b in enumerate(BLOCKS):
        x, y = train_images[rows[b]], np.asarray(train_labels)[rows[b]]
        if b in ("clip", "images"):
            out.images[b], out.labels[b] = x, y
        if b != "images":
            caps = template_captions(y, binner.words(digit_attributes(x)), seed=split_seed + 1 + k)
            if b == "corpus":
                caps = [caps[i] for i in rng.permutation(len(caps))]
            out.captions[b] = caps
    xt, yt = test_images[:n_test], np.asarray(test_labels)[:n_test]
    out.images["test"], out.labels["test"] = xt, yt
    words = binner.words(digit_attributes(xt))
    out.test_words = words
    refs = [template_captions(yt, words, seed=0, templates=(t,)) for t in REF_TEMPLATES]
    out.references = [list(r) for r in zip(*refs)]
    return out


def attribute_accuracy(captions: list[str], words: dict[str, list[str]]) -> dict[str, float]:
    """Per attribute, the fraction of captions that contain the image's own attribute word.

    Examples:
        >>> attribute_accuracy(["a thin one", "a thick two"], {"thickness": ["thin", "thin"]})
        {'thickness': 0.5}
    """
    out = {}
    for name, ws in words.items():
        hits = [f" {w} " in f" {c} " for c, w in zip(captions, ws)]
        out[name] = float(np.mean(hits)) if hits else float("nan")
    return out


def digit_word_of(caption: str) -> int:
    """The class named by the first number word of ``caption`` (-1 when it names none).

    Examples:
        >>> digit_word_of("a thick digit seven slanted to the right"), digit_word_of("a digit")
        (7, -1)
    """
    for w in caption.split():
        if w in NUMBER_WORDS:
            return NUMBER_WORDS.index(w)
    return -1
