"""``fmlab study entigraph``: the cloze probes share no sentence with any pre-training corpus of the
real pipeline (and the check does catch a leak), the probe scorer masks every mention of the
term, and the repeat and entigraph arms train on the same number of tokens."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from fmlab.studies.entigraph import normalise_sentence, shared_sentences, split_sentences
from fmlab.studies.entigraph_study import build_corpora, load_entigraph_config, synthetic_corpus
from fmlab.text.probes import term_cloze

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "study" / "entigraph.yaml"
needs_data = pytest.mark.skipif(not os.environ.get("FMLAB_DATA"),
                                reason="needs FMLAB_DATA (medabs, shakespeare, sst2)")


@needs_data
def test_probes_share_no_sentence_with_the_real_pipelines_corpora():
    from fmlab.text.tokenizer import train_tokenizer

    cfg = load_entigraph_config(CONFIG, ["source.documents=40", "base.limit=150",
                                         "entities.general_limit=2000", "budget.tokens=20000"])
    c = build_corpora(cfg)
    probes = c["probes"]
    assert len(probes) >= 10 and c["facts"]["documents"] == 40
    tok = train_tokenizer(c["base"][:50], vocab_size=300)
    synthetic, _ = synthetic_corpus(cfg, c, tok, seed=1)
    corpora = [c["base"], c["train_docs"], synthetic]
    assert shared_sentences(probes, corpora) == []
    # no probe sentence sits inside any training text either (not only as a whole sentence)
    train_text = " ".join(normalise_sentence(t) for corpus in corpora for t in corpus)
    assert not [p for p in probes if f" {normalise_sentence(p.sentence)} " in f" {train_text} "]
    # each probe blanks one of its own document's entities, and the check can fail
    assert all(p.entity in {e for d in c["entities"] for e in d} for p in probes)
    leaky = [*c["base"], probes[0].sentence]
    assert shared_sentences(probes, [leaky]) == [probes[0].sentence]


@needs_data
def test_source_documents_are_not_in_the_base_corpus():
    cfg = load_entigraph_config(CONFIG, ["source.documents=30", "base.limit=100000",
                                         "entities.general_limit=2000"])
    c = build_corpora(cfg)
    base = {normalise_sentence(s) for t in c["base"] for s in split_sentences(t)}
    source = [normalise_sentence(s) for t in c["train_docs"] for s in split_sentences(t)]
    assert sum(s in base for s in source) <= 0.02 * len(source)  # boilerplate sentences only
    assert c["facts"]["base_documents"] == 2126 - 30  # medabs train minus the source documents


class _Oracle(torch.nn.Module):
    """A masked LM that knows the true sentence: logits favour ``truth`` at every position;
    it records what it was shown."""

    def __init__(self, truth: list[list[int]], vocab: int) -> None:
        super().__init__()
        self.truth, self.vocab, self.shown = truth, vocab, []

    def forward(self, input_ids, attention_mask):
        self.shown.append(input_ids.clone())
        logits = torch.zeros(*input_ids.shape, self.vocab)
        for r, ids in enumerate(self.truth):
            logits[r, torch.arange(len(ids)), torch.tensor(ids)] = 20.0
        return type("Out", (), {"logits": logits})()


def test_term_cloze_masks_every_mention_and_scores_an_oracle_perfectly():
    from fmlab.text.tokenizer import train_tokenizer

    texts = ["imatinib treats leukemia and imatinib is safe", "metformin lowers glucose"] * 10
    tok = train_tokenizer(texts, vocab_size=60)
    items = [("imatinib treats leukemia and imatinib is safe", "imatinib"),
             ("metformin lowers glucose", "glucose"), ("nothing here", "glucose")]
    truth = [tok(s)["input_ids"] for s, _ in items[:2]]
    model = _Oracle(truth, len(tok))
    res = term_cloze(model, tok, items)
    assert res["entity_acc"] == res["token_acc"] == 1.0 and res["nll"] < 1e-6
    assert res["probes"] == 2 and res["skipped"] == 1
    shown = model.shown[0]
    for r, (sentence, term) in enumerate(items[:2]):
        masked = tok.decode(shown[r][shown[r] != tok.pad_token_id])
        pieces = len(tok(term, add_special_tokens=False)["input_ids"])
        assert term not in masked  # every mention is hidden, and nothing else
        assert masked.count("[MASK]") == sentence.count(term) * pieces
    wrong = _Oracle([[0] * len(t) for t in truth], len(tok))
    assert term_cloze(wrong, tok, items)["entity_acc"] == 0.0


@pytest.mark.slow
@needs_data
def test_smoke_study_arms_report_equal_tokens(tmp_path):
    from fmlab.cli.main import main

    out = tmp_path / "run"
    tiny = ["pretrain.set=[model.hidden=32,model.heads=2,model.layers=1,model.max_positions=130]"]
    args = ["study", "entigraph", "--config", str(CONFIG), "--out", str(out), "--set", "seeds=[1]",
            "--set", "budget.tokens=8192", "--set", "base.tokens=8192", "--set", "base.limit=100",
            "--set", "source.documents=40", "--set", tiny[0]]
    assert main(args) == 0
    import json

    arms = json.loads((out / "arms.json").read_text())
    rep, ent = arms["pretrain/repeat/seed1"], arms["pretrain/entigraph/seed1"]
    assert rep["tokens_seen"] == ent["tokens_seen"] <= 8192 and ent["corpus_tokens"] >= 8192
    assert ent["probes_shared"] == 0
    assert (out / "cloze.png").is_file() and "entigraph − repeat" in (out / "report.md").read_text()


def test_term_choice_picks_among_same_length_candidates_and_its_prior_sees_no_context():
    from fmlab.text.probes import term_choice
    from fmlab.text.tokenizer import train_tokenizer

    texts = ["imatinib treats leukemia and imatinib is safe", "metformin lowers glucose"] * 10
    tok = train_tokenizer(texts, vocab_size=200)  # every word whole: one piece each
    items = [("imatinib treats leukemia and imatinib is safe", "imatinib"),
             ("metformin lowers glucose", "glucose")]
    cands = ["imatinib", "leukemia", "metformin", "glucose", "safe"]
    truth = [tok(s)["input_ids"] for s, _ in items]
    res = term_choice(_Oracle(truth, len(tok)), tok, items, cands)
    n = {c: len(tok(c, add_special_tokens=False)["input_ids"]) for c in cands}
    chance = sum(1 / sum(n[c] == n[t] for c in cands) for _, t in items) / len(items)
    assert res["choice_acc"] == 1.0 and res["probes"] == 2 and abs(res["chance"] - chance) < 1e-9
    model = _Oracle(truth, len(tok))
    term_choice(model, tok, items, cands, context=False)
    shown = model.shown[0]
    for r, ids in enumerate(truth):  # every non-special token is hidden from the prior
        assert (shown[r, 1:len(ids) - 1] == tok.mask_token_id).all()
    wrong = _Oracle([[0] * len(t) for t in truth], len(tok))
    assert term_choice(wrong, tok, items, cands)["choice_acc"] == 0.0  # ties count as wrong
