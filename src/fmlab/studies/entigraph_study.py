"""Synthetic continued pre-training, reduced (EntiGraph, Yang et al. 2024, papers.md #51):
``fmlab study entigraph``.

The paper grows a small corpus into a large synthetic one (an LLM writes about the relations of
entity pairs/triples) and shows that continued pre-training on it teaches more closed-book
knowledge than the source repeated for the same tokens. Here, per seed s:

1. **source**: ``source.documents`` abstracts of the corpus's train split (a seeded subset, the
   same for every seed). Each document's sentences are split into a training part and a held-out
   part (``source.heldout_fraction`` of the sentences of every document with ≥ 3 sentences; seed 0,
   a data property);
2. **base**: one masked LM (tokenizer included; seed ``base.seed``) pre-trained from scratch for
   ``base.tokens`` on the base corpus, the rest of the train split (the source documents removed),
   so it knows the domain's language but not the source documents — the stand-in for the paper's
   pre-trained LLM, shared by every seed (the seeds vary the synthesis and continued training);
3. **entities** of each source document (:func:`fmlab.studies.entigraph.document_entities`, on
   the training parts against the general corpus) and the **synthetic corpus** of relation
   passages for sampled pairs/triples (:func:`fmlab.studies.entigraph.synthesise_corpus`:
   sentence recombination from the training parts, seed s) — the offline stand-in for the LLM:
   it re-combines the source's sentences and adds no new facts;
4. the arms, both continued from base for exactly ``budget.tokens``: **repeat** (the training parts
   repeated) and **entigraph** (the synthetic corpus; enough passages are drawn to cover the budget
   once, so no passage repeats);
5. **closed-book cloze** (:func:`fmlab.text.probes.term_cloze`): held-out sentences that mention
   one of their document's entities, the entity masked; and the multiple-choice form
   (:func:`fmlab.text.probes.term_choice`: the entity against every probe entity with as many
   pieces), with the same choice from the prior alone (whole sentence masked) as the control:
   ``context_gain`` = choice accuracy − prior choice accuracy. Probes whose sentence occurs (normalised)
   in any pre-training corpus are dropped, and the report states how many.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fmlab.engine.config import config_to_dict, load_config
from fmlab.errors import ConfigError
from fmlab.studies.text_study import PretrainSection, check_seeds, seed_key
from fmlab.utils.validation import check

__all__ = ["ARMS", "EntigraphConfig", "build_corpora", "load_entigraph_config",
           "run_entigraph_study"]

ARMS = ("base", "repeat", "entigraph")


@dataclass
class SourceSection:
    """The small source corpus and its held-out sentences."""

    corpus: str = "medabs"
    documents: int = 300  # seeded subset of the train split
    heldout_fraction: float = 0.25  # of each document's sentences (documents with >= 3)
    data_root: str | None = None

    def validate(self, prefix: str = "source") -> None:
        check(self.documents >= 2, f"{prefix}.documents", self.documents, "must be >= 2")
        check(0 < self.heldout_fraction < 1, f"{prefix}.heldout_fraction", self.heldout_fraction,
              "must be in (0, 1)")


@dataclass
class BaseSection:
    """The base model: pre-trained on these sources' train splits, source documents removed."""

    corpus: list[str] = field(default_factory=lambda: ["medabs"])
    tokens: int = 600_000
    seed: int = 0  # ONE base model for every seed (the paper continues one pre-trained LLM)
    limit: int | None = None  # records per source (smoke runs)

    def validate(self, prefix: str = "base") -> None:
        check(len(self.corpus) >= 1, f"{prefix}.corpus", self.corpus, "must list a source")
        check(self.tokens >= 1, f"{prefix}.tokens", self.tokens, "must be >= 1")
        check(self.limit is None or self.limit >= 1, f"{prefix}.limit", self.limit, "must be >= 1")


@dataclass
class EntitySection:
    """Entity extraction (:func:`fmlab.studies.entigraph.document_entities`)."""

    general: list[str] = field(default_factory=lambda: ["shakespeare", "sst2"])  # contrast corpus
    general_limit: int | None = 20_000  # records per general source
    top_n: int = 300
    per_doc: int = 8
    min_count: int = 3

    def validate(self, prefix: str = "entities") -> None:
        check(self.top_n >= 1, f"{prefix}.top_n", self.top_n, "must be >= 1")
        check(self.per_doc >= 2, f"{prefix}.per_doc", self.per_doc, "must be >= 2 (pairs)")
        check(self.min_count >= 1, f"{prefix}.min_count", self.min_count, "must be >= 1")


@dataclass
class SynthesisSection:
    """Sentence recombination (:func:`fmlab.studies.entigraph.synthesise_corpus`)."""

    max_sentences: int = 6
    triple_share: float = 0.3
    cover: float = 1.1  # synthetic tokens drawn / budget.tokens (>= 1: no passage repeats)

    def validate(self, prefix: str = "synthesis") -> None:
        check(self.max_sentences >= 1, f"{prefix}.max_sentences", self.max_sentences, "must be >= 1")
        check(0 <= self.triple_share <= 1, f"{prefix}.triple_share", self.triple_share,
              "must be in [0, 1]")
        check(self.cover > 0, f"{prefix}.cover", self.cover, "must be > 0")


@dataclass
class EntigraphBudget:
    tokens: int = 200_000  # continued pre-training tokens of the repeat and entigraph arms

    def validate(self, prefix: str = "budget") -> None:
        check(self.tokens >= 1, f"{prefix}.tokens", self.tokens, "must be >= 1")


@dataclass
class EntigraphConfig:
    """``configs/study/entigraph.yaml``."""

    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    source: SourceSection = field(default_factory=SourceSection)
    base: BaseSection = field(default_factory=BaseSection)
    entities: EntitySection = field(default_factory=EntitySection)
    synthesis: SynthesisSection = field(default_factory=SynthesisSection)
    budget: EntigraphBudget = field(default_factory=EntigraphBudget)
    max_probes: int | None = None  # a seeded subset of the cloze probes
    pretrain: PretrainSection = field(default_factory=PretrainSection)

    def validate(self, prefix: str = "") -> None:
        check_seeds(self.seeds)
        check(self.max_probes is None or self.max_probes >= 1, "max_probes", self.max_probes,
              "must be >= 1")


def load_entigraph_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()
                          ) -> EntigraphConfig:
    """The study's settings: YAML ``path`` (or the defaults), then ``--set`` items.

    Examples:
        >>> load_entigraph_config(None, ["seeds=[1]", "budget.tokens=8192"]).budget.tokens
        8192
    """
    cfg = load_config(path, EntigraphConfig, overrides)
    cfg.pretrain.check_loads()
    return cfg


def _split_document(doc: str, fraction: float, rng: np.random.Generator) -> tuple[str, list[str]]:
    """(training part, held-out sentences) of one document."""
    from fmlab.studies.entigraph import split_sentences

    sents = split_sentences(doc)
    if len(sents) < 3:
        return " ".join(sents), []
    k = max(1, round(fraction * len(sents)))
    held = set(rng.choice(len(sents), size=k, replace=False).tolist())
    return (" ".join(s for i, s in enumerate(sents) if i not in held),
            [s for i, s in enumerate(sents) if i in held])


def build_corpora(cfg: EntigraphConfig) -> dict[str, Any]:
    """Everything but the synthetic corpus: source training parts, held-out sentences, base texts,
    entities per document, and the cloze probes (leaky ones removed).

    Returns:
        ``{"train_docs", "heldout", "base", "entities", "probes", "dropped", "facts"}`` with
        ``probes`` a list of :class:`~fmlab.studies.entigraph.ClozeProbe`.
    """
    from fmlab.data.text import load_text
    from fmlab.data.text_splits import subset_indices
    from fmlab.studies.entigraph import cloze_probes, document_entities, shared_sentences
    from fmlab.studies.text_study import load_corpus

    s = cfg.source
    full = load_text(s.corpus, "train", data_root=s.data_root)
    if s.documents > len(full):
        raise ConfigError(f"source.documents: {s.documents} is above the {len(full)} train "
                          f"records of {s.corpus}")
    pick = set(subset_indices(len(full), s.documents, 0).tolist())
    rng = np.random.default_rng(0)
    parts = [_split_document(full.texts[i], s.heldout_fraction, rng) for i in sorted(pick)]
    train_docs = [p[0] for p in parts]
    heldout = [" ".join(p[1]) for p in parts]
    base: list[str] = []
    for src in cfg.base.corpus:
        d = load_text(src, "train", data_root=s.data_root)
        keep = [t for i, t in enumerate(d.texts) if not (src == s.corpus and i in pick)]
        sub = subset_indices(len(keep), cfg.base.limit, 0)
        base += [keep[i] for i in sub]
    general = load_corpus(cfg.entities.general, "train", limit=cfg.entities.general_limit,
                          data_root=s.data_root)[0]
    e = cfg.entities
    ents = document_entities(train_docs, general, top_n=e.top_n, per_doc=e.per_doc,
                             min_count=e.min_count)
    probes = []
    for held, doc_ents in zip(heldout, ents):
        if held and doc_ents:
            probes += cloze_probes([held], doc_ents)
    if cfg.max_probes is not None and len(probes) > cfg.max_probes:
        keep_i = sorted(np.random.default_rng(0).choice(len(probes), cfg.max_probes, replace=False))
        probes = [probes[i] for i in keep_i]
    leaked = set(shared_sentences(probes, [base, train_docs]))
    return {"train_docs": train_docs, "heldout": heldout, "base": base, "entities": ents,
            "probes": [p for p in probes if p.sentence not in leaked], "dropped": len(leaked),
            "facts": {"source_split_hash": full.split_hash, "documents": len(train_docs),
                      "heldout_sentences": sum(len(p[1]) for p in parts),
                      "base_documents": len(base)}}


def synthetic_corpus(cfg: EntigraphConfig, corpora: dict[str, Any], tokenizer: Any, seed: int
                     ) -> tuple[list[str], int]:
    """Relation passages covering ``synthesis.cover`` × ``budget.tokens`` tokens (seed ``seed``):
    the tokens per passage are measured on a pilot draw of the same seeded sequence."""
    from fmlab.studies.entigraph import synthesise_corpus

    sy = cfg.synthesis

    def draw(n: int) -> list[str]:
        return synthesise_corpus(corpora["train_docs"], corpora["entities"], n, seed,
                                 max_sentences=sy.max_sentences, triple_share=sy.triple_share)

    pilot = draw(50)
    per = np.mean([len(ids) for ids in tokenizer(pilot, add_special_tokens=False)["input_ids"]])
    texts = draw(max(50, math.ceil(sy.cover * cfg.budget.tokens / max(per, 1.0))))
    tokens = sum(len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"])
    return texts, int(tokens)


def _pretrain(cfg: EntigraphConfig, ledger: Any, arm: str, seed: int, tokens: int,
              texts_fn: Any, init: str | None = None) -> dict[str, Any]:
    from fmlab.studies.arms import pretrain_arm

    def fn(run_dir: Path, resume: bool) -> dict[str, Any]:
        t0 = time.perf_counter()
        texts, extra = texts_fn()
        sets = [*cfg.pretrain.set, f"trainer.seed={seed}", "trainer.progress=false"]
        rec = pretrain_arm(cfg.pretrain.resolved(), sets, run_dir, resume, tokens=tokens,
                           texts=texts, init=init)
        return {**rec, **extra, "seconds": round(time.perf_counter() - t0, 1)}

    return ledger.run(seed_key("pretrain", arm, seed), fn)


def _cloze(ledger: Any, arm: str, seed: int, model_rec: dict[str, Any], probes: list[Any],
           probe_hash: str, db: Path | None, base_tokens: int) -> dict[str, Any]:
    from fmlab.results import Protocol, ResultsStore
    from fmlab.text.probes import term_choice, term_cloze

    def fn(run_dir: Path, resume: bool) -> dict[str, Any]:
        from transformers import AutoModelForMaskedLM, PreTrainedTokenizerFast

        tok = PreTrainedTokenizerFast.from_pretrained(model_rec["model"])
        model = AutoModelForMaskedLM.from_pretrained(model_rec["model"])
        items = [(p.sentence, p.entity) for p in probes]
        entities = sorted({p.entity.lower() for p in probes})
        res = term_cloze(model, tok, items)
        choice = term_choice(model, tok, items, entities)
        prior = term_choice(model, tok, items, entities, context=False)
        res["prior_nll"] = term_cloze(model, tok, items, context=False)["nll"]
        res.update(choice_acc=choice["choice_acc"], chance=choice["chance"],
                   choice_probes=choice["probes"], prior_choice_acc=prior["choice_acc"],
                   context_gain=choice["choice_acc"] - prior["choice_acc"])
        cont = 0 if arm == "base" else int(model_rec["tokens_seen"])
        row = {**res, "seed": seed, "arm_name": arm, "method": arm, "model": model_rec["model"],
               "parts": {"base": base_tokens, **({arm: cont} if cont else {})},
               "continued_tokens": cont}
        if db is not None:
            protocol = Protocol.of("entigraph_cloze", "heldout", split_hash=probe_hash,
                                   model_dir=model_rec["model"], study="entigraph", arm=arm,
                                   weights_sha256=model_rec.get("weights_sha256"),
                                   base_tokens=base_tokens, continued_tokens=cont)
            ResultsStore(db).record("study_entigraph", protocol, [row],
                                    ("choice_acc", "prior_choice_acc", "context_gain",
                                     "entity_acc", "token_acc", "nll", "prior_nll"),
                                    extra_keys=("arm_name", "probes", "tokens"))
        return row

    return ledger.run(seed_key("cloze", arm, seed), fn)


def _seed_arms(cfg: EntigraphConfig, ledger: Any, seed: int, corpora: dict[str, Any]
               ) -> dict[str, dict[str, Any]]:
    """The base, repeat and entigraph pre-training records of one seed."""
    from transformers import PreTrainedTokenizerFast

    base = _pretrain(cfg, ledger, "base", cfg.base.seed, cfg.base.tokens,
                     lambda: (corpora["base"], {"corpus": "base"}))
    tok = PreTrainedTokenizerFast.from_pretrained(base["model"])
    src_tokens = sum(len(i) for i in tok(corpora["train_docs"], add_special_tokens=False)["input_ids"])

    def synthetic() -> tuple[list[str], dict[str, Any]]:
        from fmlab.studies.entigraph import shared_sentences

        texts, n = synthetic_corpus(cfg, corpora, tok, seed)
        return texts, {"corpus": "synthetic", "passages": len(texts), "corpus_tokens": n,
                       "probes_shared": len(shared_sentences(corpora["probes"], [texts]))}

    rep = _pretrain(cfg, ledger, "repeat", seed, cfg.budget.tokens,
                    lambda: (corpora["train_docs"], {"corpus": "source",
                                                      "corpus_tokens": src_tokens}),
                    init=base["model"])
    ent = _pretrain(cfg, ledger, "entigraph", seed, cfg.budget.tokens, synthetic, init=base["model"])
    return {"base": base, "repeat": rep, "entigraph": ent}


def run_entigraph_study(cfg: EntigraphConfig, out: str | Path, db: str | Path | None = None,
                        commands: list[str] | None = None) -> dict[str, Any]:
    """Every arm and cloze evaluation (each once: ``OUT/arms.json``), ``OUT/report.md``,
    ``OUT/cloze.png`` and ``OUT/study.json``.

    Args:
        cfg: the study's settings.
        out: the output folder (a rerun continues it without redoing finished arms).
        db: the results store (None: none written).
        commands: the command lines to quote in the report.

    Returns:
        ``{"pretrain": [...], "cloze": [...], "probes": {...}, "corpora": {...}, "seconds"}``.
    """
    from fmlab.studies.arms import ArmLedger
    from fmlab.studies.entigraph import pair_count
    from fmlab.studies.entigraph_report import write_entigraph_report
    from fmlab.utils.io import sha256_json, write_json

    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    db = None if db is None else Path(db)
    corpora = build_corpora(cfg)
    probes = corpora["probes"]
    if not probes:
        raise ConfigError("source: no held-out sentence mentions an entity of its document; "
                          "raise source.documents or source.heldout_fraction")
    probe_hash = sha256_json([[p.sentence, p.entity] for p in probes])
    ledger = ArmLedger(out)
    pre, cloze = [], []
    for seed in cfg.seeds:
        arms = _seed_arms(cfg, ledger, seed, corpora)
        for arm in ARMS:
            if arm == "base" and seed != cfg.seeds[0]:
                continue  # one base model, scored once
            s = cfg.base.seed if arm == "base" else seed
            pre.append({**arms[arm], "arm_name": arm})
            cloze.append(_cloze(ledger, arm, s, arms[arm], probes, probe_hash, db,
                                int(arms["base"]["tokens_seen"])))
    info = {"config": config_to_dict(cfg), "pretrain": pre, "cloze": cloze,
            "corpora": {**corpora["facts"], "entities": len({e for d in corpora["entities"]
                                                              for e in d}),
                        "entity_pairs": pair_count(corpora["entities"])},
            "probes": {"count": len(probes), "dropped_shared": corpora["dropped"],
                       "sha256": probe_hash,
                       "entities": len({p.entity for p in probes})},
            "seconds": round(time.perf_counter() - t0, 1)}
    write_json(out / "study.json", info)
    write_entigraph_report(out, cfg, info, commands or [])
    return info
