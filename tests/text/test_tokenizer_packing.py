"""Tokenizers (seeded, special tokens, errors) and packing (blocks reassemble the stream)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fmlab.errors import ConfigError, DataError
from fmlab.text.packing import (
    BlockSource,
    ExampleSource,
    encode_examples,
    pack_blocks,
    pad_collate,
    template_specials,
    token_stream,
)
from fmlab.text.tokenizer import special_tokens, tokenizer_stats, train_tokenizer

CORPUS = [f"the {a} {b} sat on the mat number {i} and watched {b}s"
          for i, (a, b) in enumerate([("big", "cat"), ("small", "dog"), ("old", "bird"),
                                      ("young", "fox")] * 15)]


@pytest.fixture(scope="module", params=["wordpiece", "unigram", "bpe"])
def tok(request):
    return train_tokenizer(CORPUS, kind=request.param, vocab_size=300), request.param


def test_special_tokens_present_with_fixed_ids(tok):
    t, kind = tok
    specials = special_tokens(kind)
    assert t.convert_tokens_to_ids(specials) == list(range(len(specials)))
    assert t.pad_token_id == 0 and t.mask_token is not None
    if kind != "wordpiece":
        assert t.eos_token_id == 1 and len([s for s in specials if s.startswith("<extra_id_")]) >= 100
        assert {"[NLU]", "[NLG]", "[S2S]", "<extra_id_99>"} <= set(t.all_special_tokens)
        # a sentinel is one token and survives a round trip
        assert t("<extra_id_7> cat", add_special_tokens=False)["input_ids"][0] == \
            t.convert_tokens_to_ids("<extra_id_7>")


def test_training_is_seeded_and_saved_bytes_equal(tmp_path, tok):
    _, kind = tok
    a = train_tokenizer(CORPUS, kind=kind, vocab_size=300, seed=3)
    b = train_tokenizer(CORPUS, kind=kind, vocab_size=300, seed=3)
    a.save_pretrained(str(tmp_path / "a"))
    b.save_pretrained(str(tmp_path / "b"))
    assert (tmp_path / "a" / "tokenizer.json").read_bytes() == \
        (tmp_path / "b" / "tokenizer.json").read_bytes()
    from transformers import AutoTokenizer

    back = AutoTokenizer.from_pretrained(str(tmp_path / "a"))
    assert back(CORPUS[:3])["input_ids"] == a(CORPUS[:3])["input_ids"]


def test_vocab_below_special_tokens_is_refused():
    with pytest.raises(ConfigError, match="vocab_size: 100 is not above the 109 special tokens"):
        train_tokenizer(CORPUS, kind="unigram", vocab_size=100)
    with pytest.raises(ConfigError, match="kind 'sentencepiece'"):
        train_tokenizer(CORPUS, kind="sentencepiece", vocab_size=100)
    with pytest.raises(DataError, match="empty corpus"):
        train_tokenizer(["", "  "], vocab_size=100)


def test_stats_count_whitespace_words():
    t = train_tokenizer(CORPUS, vocab_size=300)
    s = tokenizer_stats(t, ["the cat sat", "the mat"])
    assert s["words"] == 5 and s["tokens_per_word"] == 1.0 and s["split_word_fraction"] == 0.0
    # a word the vocabulary has never seen is split into pieces
    s = tokenizer_stats(t, ["thecatsatonthemat"])
    assert s["words"] == 1 and s["split_word_fraction"] == 1.0 and s["tokens"] > 1


def test_pack_blocks_reassembles_the_stream(tok):
    t, _ = tok
    prefix, suffix = template_specials(t)
    stream = token_stream(CORPUS, t)
    blocks = pack_blocks(CORPUS, t, 16)
    body = 16 - len(prefix)
    assert blocks.shape == (len(stream) // body, 16)
    assert (blocks[:, :len(prefix)] == torch.tensor(prefix)).all()
    assert np.array_equal(blocks[:, len(prefix):].reshape(-1).numpy(), stream[:blocks.shape[0] * body])
    # documents are separated by the template's suffix
    assert int((torch.as_tensor(stream) == suffix[0]).sum()) == len(CORPUS)
    with pytest.raises(DataError, match="fewer than one block"):
        pack_blocks(["cat"], t, 64)


def test_encode_and_pad_collate(tok):
    t, _ = tok
    ex = encode_examples(CORPUS[:5] + ["cat"], t, 8, labels=[0, 1, 0, 1, 0, 1])
    assert max(len(e["input_ids"]) for e in ex) == 8  # truncated, special tokens kept
    assert ex[0]["input_ids"].tolist() == t(CORPUS[0], truncation=True, max_length=8)["input_ids"]
    src = ExampleSource(ex, t.pad_token_id)
    b = src.get_batch(np.array([5, 0]))
    n_short = len(ex[5]["input_ids"])
    assert b["input_ids"].shape == (2, 8) and b["labels"].tolist() == [1, 0]
    assert b["attention_mask"][0].tolist() == [1] * n_short + [0] * (8 - n_short)
    assert (b["input_ids"][0, n_short:] == t.pad_token_id).all()
    assert src.labels.tolist() == [0, 1, 0, 1, 0, 1]
    assert pad_collate([{"input_ids": [3]}])["input_ids"].tolist() == [[3]]


def test_engine_order_over_blocks_is_seeded_and_covers_each_epoch():
    from fmlab.engine import TrainerConfig, Trainer

    class Record(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))
            self.seen = []

        def forward(self, batch):
            self.seen.append(batch["input_ids"][:, 0].tolist())
            return (self.w - batch["input_ids"].float().mean()) ** 2, {}

    src = BlockSource(torch.arange(40).reshape(10, 4))
    cfg = dict(batch_size=2, device="cpu", progress=False, tensorboard=False, log_every=1)
    one = Record()
    Trainer(one, src, TrainerConfig(max_steps=8, **cfg)).fit()
    again = Record()
    Trainer(again, src, TrainerConfig(max_steps=8, **cfg)).fit()
    assert one.seen == again.seen and len({b for s in one.seen[:5] for b in s}) == 10


def test_cli_tokenizer(tmp_path, capsys):
    from fmlab.cli.main import main

    data = tmp_path / "c.txt"
    data.write_text("\n".join(CORPUS) + "\n")
    out = tmp_path / "tok"
    assert main(["text", "tokenizer", "--data", f"text:{data}", "--vocab-size", "200",
                 "--out", str(out)]) == 0
    rec = json.loads((out / "tokenizer_stats.json").read_text())
    assert set(rec["stats"]) == {f"text:{data}:train", f"text:{data}:test"}
    assert (out / "tokenizer.json").is_file() and "tokens per word" in capsys.readouterr().out
    assert main(["text", "tokenizer", "--data", f"text:{data}", "--vocab-size", "3",
                 "--out", str(tmp_path / "x")]) == 2
    assert "vocab_size: 3" in capsys.readouterr().err
