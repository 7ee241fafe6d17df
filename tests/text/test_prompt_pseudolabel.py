"""The prompt (label-word) classifier and the pseudo-label pre-training pieces: formulas on random
tensors and reductions to known cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fmlab.errors import ConfigError
from fmlab.text.prompt import PromptClassifier, encode_prompted, label_word_ids
from fmlab.text.pseudolabel import SoftTargetClassification, budget_order, pseudo_targets
from fmlab.text.tokenizer import train_tokenizer

TEXTS = [f"the {w} film was {v} and the {w} plot was long" for w in ("old", "new", "odd")
         for v in ("good", "bad", "fine")] * 5


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(TEXTS + ["it was"], vocab_size=120)


def _mlm(vocab: int):
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    return BertForMaskedLM(BertConfig(vocab_size=vocab, hidden_size=16, num_hidden_layers=1,
                                      num_attention_heads=2, intermediate_size=32,
                                      max_position_embeddings=64)).eval()


def test_short_texts_encode_exactly_as_the_tokenizer_encodes_the_filled_template(tok):
    ex = encode_prompted(TEXTS[:4], tok, 64, "{text} it was [MASK] .")
    for t, e in zip(TEXTS[:4], ex):
        assert e["input_ids"].tolist() == tok(f"{t} it was {tok.mask_token} .")["input_ids"]


def test_long_texts_lose_text_never_the_template(tok):
    long = " ".join(TEXTS[:6])
    (e,) = encode_prompted([long], tok, 20, "{text} it was [MASK] .", labels=[1])
    ids = e["input_ids"].tolist()
    tail = tok(f"it was {tok.mask_token} .", add_special_tokens=False)["input_ids"]
    assert len(ids) == 20 and ids.count(tok.mask_token_id) == 1 and e["labels"] == 1
    assert ids[-1 - len(tail):-1] == tail and ids[-1] == tok.sep_token_id


def test_prompt_logits_are_the_mlm_logits_of_the_label_words_at_the_mask(tok):
    mlm = _mlm(len(tok))
    words = label_word_ids(tok, ["good", "bad"])
    clf = PromptClassifier(mlm, words, tok.pad_token_id, tok.mask_token_id).eval()
    ex = encode_prompted(TEXTS[:3], tok, 64, "{text} it was [MASK] .")
    from fmlab.text.packing import pad_collate

    b = pad_collate(ex, tok.pad_token_id)
    full = mlm(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
    pos = (b["input_ids"] == tok.mask_token_id).int().argmax(1)
    want = full[torch.arange(3), pos][:, words]
    torch.testing.assert_close(clf(b["input_ids"]), want)
    # padding more columns changes nothing (the mask and the attention mask carry the length)
    padded = F.pad(b["input_ids"], (0, 5), value=tok.pad_token_id)
    torch.testing.assert_close(clf(padded), want)


def test_a_label_word_that_is_not_one_token_is_refused_by_name(tok):
    with pytest.raises(ConfigError, match="'filmgoodness'"):
        label_word_ids(tok, ["good", "filmgoodness"])


def test_soft_target_loss_is_cross_entropy_plus_nothing_for_one_hot_and_entropy_plus_kl():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 3, generator=g)
    y = torch.randint(0, 3, (6,), generator=g)

    class Fixed(torch.nn.Module):
        def forward(self, ids, mask=None):
            return logits

    obj = SoftTargetClassification(Fixed())
    batch = {"input_ids": torch.zeros(6, 2, dtype=torch.long), "attention_mask": torch.ones(6, 2)}
    hard, _ = obj({**batch, "targets": F.one_hot(y, 3).float()})
    torch.testing.assert_close(hard, F.cross_entropy(logits, y))
    q = torch.softmax(torch.randn(6, 3, generator=g), 1)
    soft, _ = obj({**batch, "targets": q})
    logp = F.log_softmax(logits, 1)
    entropy = -(q * q.log()).sum(1).mean()
    kl = (q * (q.log() - logp)).sum(1).mean()
    torch.testing.assert_close(soft, entropy + kl)


def test_pseudo_targets_hard_is_the_argmax_one_hot():
    p = torch.softmax(torch.randn(10, 4, generator=torch.Generator().manual_seed(1)), 1)
    h = pseudo_targets(p, "hard")
    assert torch.equal(h.argmax(1), p.argmax(1)) and torch.equal(h.sum(1), torch.ones(10))
    with pytest.raises(ConfigError, match="pseudo.targets"):
        pseudo_targets(p, "argmax")


@pytest.mark.parametrize("tokens", [50, 333, 5000])
def test_budget_order_fills_the_budget_with_full_batches_of_whole_passes(tokens):
    lengths = np.random.default_rng(0).integers(3, 15, size=37)
    order = budget_order(lengths, tokens, 4, seed=3)
    used = int(lengths[order].sum())
    assert len(order) % 4 == 0 and used <= tokens
    # the next full batch would not fit
    nxt = budget_order(lengths, tokens + 10**4, 4, seed=3)[len(order):len(order) + 4]
    assert used + int(lengths[nxt].sum()) > tokens
    full = len(order) // 37
    for k in range(full):  # every complete pass is a permutation of the pool
        assert sorted(order[37 * k:37 * (k + 1)].tolist()) == list(range(37))
