"""EntiGraph stand-in: entities, recombined passages from training sentences only, cloze probes
that share no sentence with the training corpora (and a check that can catch one that does)."""

from __future__ import annotations

import pytest

from fmlab.errors import DataError
from fmlab.studies.entigraph import (
    cloze_probes,
    document_entities,
    normalise_sentence,
    pair_count,
    shared_sentences,
    split_sentences,
    synthesise_corpus,
)

TRAIN = [
    "Imatinib inhibits kinase activity in leukemia. Leukemia cells respond to imatinib. The trial was small.",
    "Kinase mutations reduce imatinib response. Leukemia relapse follows kinase mutations.",
    "Metformin lowers glucose in diabetes. Diabetes patients took metformin daily. Glucose fell.",
    "Insulin and metformin control glucose. Diabetes care uses insulin.",
] * 2
HELDOUT = ["Imatinib was given for leukemia in a new cohort. Metformin reduced glucose in older adults."]
GENERAL = ["The king rode to the castle. The queen was in the garden. The trial was long.",
           "A small horse crossed the river. Patients and people walked daily."] * 3


def test_split_and_normalise():
    assert split_sentences("A b. C d! (E) f? 3 g.") == ["A b.", "C d!", "(E) f?", "3 g."]
    assert normalise_sentence("  Leukemia, cells!  ") == "leukemia cells"


def test_document_entities_are_domain_words_of_each_document():
    ents = document_entities(TRAIN, GENERAL, per_doc=4, min_count=2)
    assert "imatinib" in ents[0] and "leukemia" in ents[0]
    assert "metformin" in ents[2] and "imatinib" not in ents[2]
    assert not any(w in e for e in ents for w in ("the", "trial", "daily"))
    assert pair_count(ents) >= 6


def test_passages_recombine_training_sentences_only_and_are_seeded():
    ents = document_entities(TRAIN, GENERAL, per_doc=4, min_count=2)
    a = synthesise_corpus(TRAIN, ents, n_passages=20, seed=0)
    assert a == synthesise_corpus(TRAIN, ents, n_passages=20, seed=0)
    assert a != synthesise_corpus(TRAIN, ents, n_passages=20, seed=1)
    source = {normalise_sentence(s) for d in TRAIN for s in split_sentences(d)}
    for p in a:
        head, *body = split_sentences(p)
        assert " and " in head
        assert body and all(normalise_sentence(s) in source for s in body)
        first = head.rstrip(".").lower().split(" and ")
        assert any(e in normalise_sentence(body[0]) for e in first)
    with pytest.raises(DataError, match="entity lists"):
        synthesise_corpus(TRAIN, ents[:1], 1, seed=0)


def test_cloze_probes_blank_the_entity_and_never_share_a_training_sentence():
    probes = cloze_probes(HELDOUT, ["imatinib", "metformin"])
    assert [p.entity for p in probes] == ["imatinib", "metformin"]
    assert probes[0].prompt.startswith("[MASK] was given") and "imatinib" not in probes[0].prompt.lower()
    ents = document_entities(TRAIN, GENERAL, per_doc=4, min_count=2)
    synthetic = synthesise_corpus(TRAIN, ents, n_passages=10, seed=0)
    assert shared_sentences(probes, [TRAIN, synthetic]) == []
    leaky = cloze_probes(["Diabetes patients took metformin daily."], ["metformin"])
    assert shared_sentences(leaky, [TRAIN]) == ["Diabetes patients took metformin daily."]
    assert len(cloze_probes(HELDOUT * 5, ["imatinib"], max_probes=2)) == 2
