"""EntiGraph, reduced (issue 19; Yang et al. 2024, papers.md #51): grow a small corpus into a larger
synthetic one about the relations between its entities, and closed-book cloze probes to test what
continued pre-training on it taught.

The paper prompts an LLM to (1) list a document's salient entities and (2) write about the
relation of sampled entity pairs and triples. Offline, without an LLM, both steps have stand-ins:

1. **entities**: the document's words most characteristic of the source corpus against a general
   corpus (:func:`fmlab.studies.vocab.domain_terms`), kept per document;
2. **relation text** (sentence recombination): for a sampled pair/triple of entities of one
   document, the source sentences (training part only) that mention them, those mentioning
   several of them first, joined into a new passage that starts with the entities' names. It
   re-orders and re-combines existing sentences, so it adds diversity of context — the paper's
   mechanism for why repeated tokens teach less than synthetic ones — but no new facts.

:func:`cloze_probes` turns held-out sentences that mention an entity into fill-in-the-entity
questions; :func:`shared_sentences` checks that no probe sentence occurs in a training corpus.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fmlab.errors import DataError
from fmlab.studies.vocab import domain_terms

__all__ = ["ClozeProbe", "cloze_probes", "document_entities", "normalise_sentence", "pair_count",
           "shared_sentences", "split_sentences", "synthesise_corpus"]

_SENT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\[])")


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text`` (split after . ! ? before an upper-case letter, digit or bracket)."""
    return [s.strip() for s in _SENT.split(text.strip()) if s.strip()]


def normalise_sentence(s: str) -> str:
    """Lower case, single spaces, no trailing punctuation: the key sentences are compared by."""
    return " ".join(re.sub(r"[^\w\s]", " ", s.lower()).split())


def _mentions(sentence: str, entity: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(entity)}(?![\w-])", sentence.lower()) is not None


def document_entities(docs: Sequence[str], general_texts: Sequence[str], top_n: int = 300,
                      per_doc: int = 8, min_count: int = 3) -> list[list[str]]:
    """Each document's salient entities: corpus-level domain terms, the ``per_doc`` most
    characteristic that the document mentions."""
    terms = domain_terms(docs, general_texts, top_n=top_n, min_count=min_count)
    rank = {t: i for i, (t, _) in enumerate(terms)}
    out = []
    for d in docs:
        found = [t for t in rank if _mentions(d, t)]
        out.append(sorted(found, key=rank.__getitem__)[:per_doc])
    return out


def synthesise_corpus(docs: Sequence[str], entities: Sequence[Sequence[str]], n_passages: int,
                      seed: int, max_sentences: int = 6, triple_share: float = 0.3) -> list[str]:
    """Relation passages about sampled entity pairs/triples (sentence recombination).

    Args:
        docs: the source documents (training part only: every sentence used comes from here).
        entities: per document, its entities (:func:`document_entities`).
        n_passages: passages to write.
        seed: the sampling seed.
        max_sentences: sentences per passage at most.
        triple_share: share of passages about triples (the rest: pairs).

    Returns:
        ``n_passages`` strings, each "A and B. <sentences mentioning them>".
    """
    if len(docs) != len(entities):
        raise DataError(f"synthesise_corpus: {len(docs)} documents but {len(entities)} entity lists")
    sentences = [s for d in docs for s in split_sentences(d)]
    usable = [i for i, e in enumerate(entities) if len(e) >= 2]
    if not usable or not sentences:
        raise DataError("synthesise_corpus: no document has two entities to relate")
    rng = np.random.default_rng(seed)
    mentioned: dict[str, frozenset[int]] = {}  # entity -> sentences mentioning it (computed once)
    out = []
    for _ in range(n_passages):
        ents = list(entities[usable[rng.integers(len(usable))]])
        k = 3 if len(ents) >= 3 and rng.random() < triple_share else 2
        chosen = [ents[i] for i in sorted(rng.choice(len(ents), size=k, replace=False))]
        for e in chosen:
            if e not in mentioned:
                mentioned[e] = frozenset(j for j, s in enumerate(sentences) if _mentions(s, e))
        count = Counter(j for e in chosen for j in mentioned[e])
        hits = [(count[j], j) for j in sorted(count)]
        rng.shuffle(hits)
        hits.sort(key=lambda h: -h[0])          # stable: shuffled within equal counts
        body = " ".join(sentences[j] for _, j in hits[:max_sentences])
        out.append(f"{' and '.join(chosen).capitalize()}. {body}")
    return out


@dataclass(frozen=True)
class ClozeProbe:
    """A held-out sentence with one entity blanked: ``prompt`` holds ``mask`` where it stood."""

    sentence: str
    entity: str
    prompt: str


def cloze_probes(heldout_docs: Sequence[str], entities: Sequence[str], mask: str = "[MASK]",
                 max_probes: int | None = None, seed: int = 0) -> list[ClozeProbe]:
    """Fill-in-the-entity probes from held-out sentences that mention a known entity.

    Args:
        heldout_docs: documents never used for (continued) pre-training.
        entities: the entities to ask about (those the training corpus is about).
        mask: the blank's text (one blank per probe: the entity's first mention).
        max_probes: keep a seeded random subset of at most this many.
        seed: seed of the subset.
    """
    probes = []
    for d in heldout_docs:
        for s in split_sentences(d):
            for e in entities:
                m = re.search(rf"(?<![\w-]){re.escape(e)}(?![\w-])", s, flags=re.IGNORECASE)
                if m:
                    probes.append(ClozeProbe(s, e, s[:m.start()] + mask + s[m.end():]))
                    break
    if max_probes is not None and len(probes) > max_probes:
        keep = np.random.default_rng(seed).choice(len(probes), size=max_probes, replace=False)
        probes = [probes[i] for i in sorted(keep)]
    return probes


def shared_sentences(probes: Sequence[ClozeProbe], corpora: Sequence[Sequence[str]]) -> list[str]:
    """Probe sentences that also occur (normalised) as a sentence of any training corpus."""
    seen = {normalise_sentence(s) for corpus in corpora for doc in corpus for s in split_sentences(doc)}
    return [p.sentence for p in probes if normalise_sentence(p.sentence) in seen]


def pair_count(entities: Sequence[Sequence[str]]) -> int:
    """Distinct entity pairs within documents: the graph EntiGraph samples its passages from."""
    return len({tuple(sorted(p)) for e in entities for p in itertools.combinations(e, 2)})
