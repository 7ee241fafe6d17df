"""Held-out probes: the same tokens are scored for every model; entities are counted whole."""

from __future__ import annotations

import torch

from fmlab.text.models import _toy_tokenizer, build_model
from fmlab.text.probes import continuation_loss, entity_cloze, infill_loss, token_cloze

from .test_objectives import CHEM, TINY, _wordpiece


def test_continuation_scores_the_same_suffix_tokens_for_t5_and_gpt() -> None:
    torch.manual_seed(0)
    tok = _toy_tokenizer(seq2seq=True)
    blocks = torch.randint(20, 60, (6, 16))
    t5, gpt = build_model("t5", TINY, tok), build_model("gpt", TINY, tok)
    a, b = continuation_loss(t5, tok, blocks), continuation_loss(gpt, tok, blocks)
    assert a["tokens"] == b["tokens"] == 6 * 8
    # the decoder-only score is the mean NLL of the suffix under the model
    with torch.no_grad():
        logp = gpt(input_ids=blocks).logits.log_softmax(-1)[:, 7:-1]
    manual = -logp.gather(-1, blocks[:, 8:, None]).mean().item()
    assert abs(b["loss"] - manual) < 1e-4
    inf = infill_loss(t5, tok, blocks)
    assert inf["tokens"] == 6 * 2 and 0 <= inf["acc"] <= 1  # round(16 * 0.15) = 2 per block


def test_entity_cloze_masks_each_marked_entity_once() -> None:
    tok = _wordpiece(CHEM * 20)
    model = build_model("bert", TINY, tok)
    out = entity_cloze(model, tok, CHEM)
    assert out["entities"] == 2 * len(CHEM) and out["tokens"] >= out["entities"]
    blocks = torch.randint(5, len(tok), (4, 20))
    assert token_cloze(model, tok, blocks, seed=1)["tokens"] == token_cloze(model, tok, blocks, seed=1)["tokens"]
