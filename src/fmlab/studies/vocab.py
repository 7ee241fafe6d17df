"""Vocabulary analysis for the domain-vs-general study (issue 19; PubMedBERT, papers.md #18).

PubMedBERT's argument for a domain vocabulary: a general-domain WordPiece splits domain terms
("acetyltransferase", "lymphoma") into many pieces, so the model sees fragments instead of words.
This module measures that on the user's corpora:

- :func:`domain_terms`: the words most characteristic of the domain corpus against the general
  one, by the log-odds ratio with an informative Dirichlet prior (Monroe et al. 2008), which does
  not favour rare words the way a raw frequency ratio does;
- :func:`term_pieces`: how many pieces a tokenizer cuts each term into;
- :func:`fragmentation_table`: per vocabulary, the share of domain terms split into ≥ 2 pieces
  and the mean pieces per term, plus the terms split the most by the first (general) vocabulary.

Tokens per running word over whole corpora are :func:`fmlab.text.tokenizer.tokenizer_stats`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from fmlab.errors import DataError

__all__ = ["domain_terms", "fragmentation_table", "term_pieces", "words"]

_WORD = re.compile(r"[a-z][a-z0-9\-]*[a-z0-9]|[a-z]")


def words(texts: Iterable[str]) -> Counter:
    """Lower-cased alphabetic word counts (digits allowed inside: "il-6", "p53")."""
    c: Counter = Counter()
    for t in texts:
        c.update(_WORD.findall(t.lower()))
    return c


def domain_terms(domain_texts: Sequence[str], general_texts: Sequence[str], top_n: int = 200,
                 min_count: int = 5, min_length: int = 4) -> list[tuple[str, float]]:
    """The ``top_n`` words most over-represented in the domain corpus, with their z-scores.

    The z-score of word w is δ_w / σ_w with δ_w the difference of the log-odds of w in the two
    corpora, each smoothed by a prior proportional to w's count in both together (α_w = a·f_w,
    a = 1 per 1,000 words), and σ_w² = 1/(y_w^D + α_w) + 1/(y_w^G + α_w).

    Args:
        domain_texts: the domain corpus.
        general_texts: the general corpus.
        top_n: how many terms.
        min_count: minimum count in the domain corpus.
        min_length: minimum characters (drops "et", "al", "of").

    Returns:
        ``[(term, z), ...]`` by decreasing z.
    """
    d, g = words(domain_texts), words(general_texts)
    nd, ng = sum(d.values()), sum(g.values())
    if nd == 0 or ng == 0:
        raise DataError("domain_terms: both corpora need words")
    vocab = [w for w, c in d.items() if c >= min_count and len(w) >= min_length]
    both = d + g
    total = nd + ng
    a0 = total / 1000.0
    out = []
    for w in vocab:
        alpha = a0 * both[w] / total
        yd, yg = d[w], g.get(w, 0)
        ld = np.log((yd + alpha) / (nd + a0 - yd - alpha))
        lg = np.log((yg + alpha) / (ng + a0 - yg - alpha))
        out.append((w, float((ld - lg) / np.sqrt(1 / (yd + alpha) + 1 / (yg + alpha)))))
    out.sort(key=lambda t: (-t[1], t[0]))
    return out[:top_n]


def term_pieces(tokenizer: Any, terms: Sequence[str]) -> list[int]:
    """Pieces each term becomes (no special tokens); every term is encoded on its own."""
    if not terms:
        raise DataError("term_pieces: no terms")
    enc = tokenizer(list(terms), add_special_tokens=False)["input_ids"]
    return [len(ids) for ids in enc]


def _unknown_share(tokenizer: Any, terms: Sequence[str]) -> float:
    """Share of terms holding the unknown token: WordPiece maps a word with a character outside
    its alphabet to ONE ``[UNK]``, which would otherwise count as "not split"."""
    unk = getattr(tokenizer, "unk_token_id", None)
    if unk is None:
        return 0.0
    enc = tokenizer(list(terms), add_special_tokens=False)["input_ids"]
    return float(np.mean([unk in ids for ids in enc]))


def fragmentation_table(tokenizers: Mapping[str, Any], terms: Sequence[str], k: int = 10
                        ) -> dict[str, Any]:
    """Share of terms split and mean pieces per vocabulary; the ``k`` most fragmented terms.

    Args:
        tokenizers: name → fast tokenizer; the FIRST is the reference (the general vocabulary)
            whose most fragmented terms are listed.
        terms: the domain terms (e.g. from :func:`domain_terms`).
        k: rows of the most-fragmented table.

    Returns:
        ``{"summary": {name: {"split_share", "pieces_per_term", "unknown_share"}},
        "most_fragmented":
        [{"term", name: pieces, ...}, ...]}``.
    """
    if not tokenizers:
        raise DataError("fragmentation_table: no tokenizers")
    pieces = {name: term_pieces(tok, terms) for name, tok in tokenizers.items()}
    summary = {name: {"split_share": float(np.mean(np.asarray(p) > 1)),
                      "pieces_per_term": float(np.mean(p)),
                      "unknown_share": _unknown_share(tokenizers[name], terms)}
               for name, p in pieces.items()}
    ref = next(iter(pieces))
    order = sorted(range(len(terms)), key=lambda i: (-pieces[ref][i], terms[i]))[:k]
    rows = [{"term": terms[i], **{name: pieces[name][i] for name in pieces}} for i in order]
    return {"summary": summary, "most_fragmented": rows}
