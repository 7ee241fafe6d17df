"""Captioning metrics: BLEU-4 and CIDEr-D of candidate captions against reference captions.

Both come from ``pycocoevalcap`` (the COCO caption evaluation code every captioning paper
reports; extra ``fmlab[caption]``), so numbers here are comparable with published ones: BLEU with
the "closest reference length" brevity penalty, corpus-level; CIDEr-D with its Gaussian length
penalty (σ = 6), clipped n-gram counts and the ×10 scale, IDF taken from the references of the
evaluated set (so a CIDEr-D value depends on the whole set, not on one caption alone).

COCO evaluation tokenises with the Stanford PTB tokenizer, which needs Java; here
:func:`tokenize_caption` stands in for it (lower case, punctuation removed, whitespace split).
That is what the PTB tokenizer produces on plain captions like ours; captions with contractions or
hyphens can differ slightly from a Java-tokenised score.
"""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Mapping, Sequence

from fmlab.errors import ConfigError, DataError

__all__ = ["bleu4", "caption_scores", "cider_d", "tokenize_caption"]

_PUNCT = re.compile(r"[^\w\s]", flags=re.UNICODE)


def tokenize_caption(text: str) -> str:
    """Lower-case, drop punctuation, collapse whitespace: ``"A dog, running!"`` → ``"a dog running"``."""
    return " ".join(_PUNCT.sub(" ", text.lower()).split())


def _prepare(candidates: Sequence[str], references: Sequence[Sequence[str]]
             ) -> tuple[dict[int, list[str]], dict[int, list[str]]]:
    if len(candidates) != len(references):
        raise DataError(f"captioning metrics: {len(candidates)} candidates but {len(references)} "
                        "reference lists (one list per candidate)")
    if not candidates:
        raise DataError("captioning metrics: no candidates")
    res, gts = {}, {}
    for i, (c, refs) in enumerate(zip(candidates, references)):
        if isinstance(refs, str) or not refs:
            raise DataError(f"captioning metrics: candidate {i} needs a non-empty list of "
                            f"reference strings, got {refs!r}")
        res[i] = [tokenize_caption(c)]
        gts[i] = [tokenize_caption(r) for r in refs]
    return gts, res


def _scorer(name: str):
    try:
        if name == "bleu":
            from pycocoevalcap.bleu.bleu import Bleu

            return Bleu(4)
        from pycocoevalcap.cider.cider import Cider

        return Cider()
    except ImportError:
        raise ConfigError("captioning metrics need pycocoevalcap: pip install -e '.[caption]'") from None


def bleu4(candidates: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Corpus BLEU-4 (COCO's): geometric mean of clipped 1–4-gram precisions × brevity penalty.

    Args:
        candidates: one generated caption per image.
        references: for each candidate, its list of reference captions.

    Returns:
        BLEU-4 in [0, 1] (1 up to pycocoevalcap's 1e-9 smoothing when every candidate equals one
        of its references).

    Examples:
        >>> round(bleu4(["a cat sits on the mat"], [["a cat sits on the mat", "there is a cat"]]), 6)
        1.0
    """
    gts, res = _prepare(candidates, references)
    with contextlib.redirect_stdout(io.StringIO()):   # pycocoevalcap prints its ratios
        scores, _ = _scorer("bleu").compute_score(gts, res, verbose=0)
    return float(scores[3])


def cider_d(candidates: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """CIDEr-D (×10 scale, the number captioning papers report) over the whole set.

    Args:
        candidates: one generated caption per image.
        references: for each candidate, its list of reference captions.

    Returns:
        The mean CIDEr-D over candidates (≥ 0; 0 when no n-gram is shared).
    """
    gts, res = _prepare(candidates, references)
    score, _ = _scorer("cider").compute_score(gts, res)
    return float(score)


def caption_scores(candidates: Sequence[str], references: Sequence[Sequence[str]],
                   metrics: Sequence[str] = ("bleu4", "cider_d")) -> Mapping[str, float]:
    """The named captioning metrics as one dict (``bleu4``, ``cider_d``)."""
    fns = {"bleu4": bleu4, "cider_d": cider_d}
    unknown = [m for m in metrics if m not in fns]
    if unknown:
        raise ConfigError(f"captioning metric {unknown[0]!r} is unknown; choose from {sorted(fns)}")
    return {m: fns[m](candidates, references) for m in metrics}
