"""BLEU-4 / CIDEr-D: parity with sacrebleu, hand-checkable cases and the properties CIDEr-D promises."""

from __future__ import annotations

import math

import pytest

pytest.importorskip("pycocoevalcap", reason="captioning metrics need the [caption] extra")

from fmlab.errors import DataError  # noqa: E402
from fmlab.metrics.captioning import bleu4, caption_scores, cider_d, tokenize_caption  # noqa: E402

REFS = [["a man is riding a brown horse on the beach", "a person rides a horse near the sea"],
        ["two dogs are playing in the white snow", "dogs play together in deep snow"],
        ["a red bus drives down a city street", "a bus on the road in a city"]]
CANDS = ["a man is riding a horse on the beach", "two dogs are playing in the snow",
         "a red bus on a city street"]


def test_tokenizer_lowercases_and_drops_punctuation():
    assert tokenize_caption("A Dog,  running! (fast)") == "a dog running fast"


def test_bleu4_matches_sacrebleu_corpus_bleu():
    sacrebleu = pytest.importorskip("sacrebleu")
    streams = [[r[j] for r in REFS] for j in range(2)]
    ref = sacrebleu.corpus_bleu(CANDS, streams, tokenize="none", smooth_method="none").score / 100
    assert bleu4(CANDS, REFS) == pytest.approx(ref, abs=1e-6)


def test_bleu4_hand_computed_single_pair():
    # "the cat sat on the mat" vs "the cat sat on a mat": clipped precisions 5/6, 3/5, 2/4, 1/3
    # and equal lengths (brevity penalty 1)
    want = math.exp((math.log(5 / 6) + math.log(3 / 5) + math.log(2 / 4) + math.log(1 / 3)) / 4)
    assert bleu4(["the cat sat on the mat"], [["the cat sat on a mat"]]) == pytest.approx(want, rel=1e-6)
    assert bleu4(["The cat sat on a mat."], [["the cat sat on a mat"]]) == pytest.approx(1.0, abs=1e-6)


def test_cider_d_prefers_the_matching_caption_and_penalises_repetition():
    good = cider_d(CANDS, REFS)
    shuffled = cider_d(CANDS[1:] + CANDS[:1], REFS)
    assert good > 5 * shuffled
    # CIDEr-D clips n-gram counts by the references: repeating a phrase cannot raise the score
    repeated = ["a man is riding a horse on the beach a horse a horse a horse"] + CANDS[1:]
    assert cider_d(repeated, REFS) < good


def test_cider_d_is_invariant_to_the_order_of_images():
    order = [2, 0, 1]
    assert cider_d([CANDS[i] for i in order], [REFS[i] for i in order]) == pytest.approx(cider_d(CANDS, REFS))


def test_bad_inputs_name_the_problem():
    with pytest.raises(DataError, match="2 candidates but 3"):
        bleu4(CANDS[:2], REFS)
    with pytest.raises(DataError, match="candidate 0 needs a non-empty list"):
        cider_d(["a"], ["a string, not a list"])
    assert set(caption_scores(CANDS, REFS)) == {"bleu4", "cider_d"}
