"""Domain terms by log-odds, term pieces and the fragmentation table on synthetic corpora."""

from __future__ import annotations

import numpy as np
import pytest

from fmlab.errors import DataError
from fmlab.studies.vocab import domain_terms, fragmentation_table, term_pieces, words
from fmlab.text.tokenizer import train_tokenizer

COMMON = "the patient was given a dose and the result was good for the group".split()
DOMAIN_ONLY = ["acetyltransferase", "lymphadenopathy", "thrombocytopenia", "glycoprotein"]
GENERAL_ONLY = "king queen castle sword horse river".split()


def _corpora(seed: int = 0) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    dom = [" ".join(rng.choice(COMMON + DOMAIN_ONLY * 2, size=12)) for _ in range(300)]
    gen = [" ".join(rng.choice(COMMON + GENERAL_ONLY, size=12)) for _ in range(300)]
    # every letter at the start of a word and inside one (WordPiece's "##x" pieces)
    return dom, gen + [" ".join("abcdefghijklmnopqrstuvwxyz") + " zabcdefghijklmnopqrstuvwxyz"]


def test_words_lowercase_and_keep_inner_digits_and_hyphens():
    assert words(["IL-6 and p53, et al."]) == {"il-6": 1, "and": 1, "p53": 1, "et": 1, "al": 1}


def test_domain_terms_are_the_domain_only_words_not_shared_ones():
    dom, gen = _corpora()
    top = [w for w, _ in domain_terms(dom, gen, top_n=4)]
    assert sorted(top) == sorted(DOMAIN_ONLY)
    z = dict(domain_terms(dom, gen, top_n=100))
    assert z["patient"] < min(z[w] for w in DOMAIN_ONLY) / 3   # shared words score far lower
    assert not any(w in z for w in GENERAL_ONLY)
    with pytest.raises(DataError):
        domain_terms(dom, [])


def test_a_general_vocabulary_fragments_domain_terms_more_than_a_domain_one():
    dom, gen = _corpora()
    general = train_tokenizer(gen, vocab_size=120, seed=0)
    domain = train_tokenizer(dom, vocab_size=120, seed=0)
    assert term_pieces(domain, DOMAIN_ONLY) == [1, 1, 1, 1]
    table = fragmentation_table({"general": general, "domain": domain}, DOMAIN_ONLY, k=2)
    s = table["summary"]
    assert s["general"]["split_share"] == 1.0 and s["domain"]["split_share"] == 0.0
    assert s["general"]["pieces_per_term"] > 2 and s["general"]["unknown_share"] == 0.0
    no_f = train_tokenizer([t.replace("f", "") for t in gen], vocab_size=120, seed=0)
    assert fragmentation_table({"g": no_f}, DOMAIN_ONLY)["summary"]["g"]["unknown_share"] == 0.25
    rows = table["most_fragmented"]
    assert len(rows) == 2 and rows[0]["general"] >= rows[1]["general"] >= 2
    assert set(rows[0]) == {"term", "general", "domain"}
