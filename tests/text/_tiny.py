"""A tiny BertForMaskedLM saved like `fmlab text pretrain` saves RUN_DIR/model (for tests that
must not depend on the pre-training command)."""

from __future__ import annotations

from pathlib import Path


def tiny_corpus(n: int = 120) -> tuple[list[str], list[int]]:
    """Sentences whose label is the sentiment word they contain."""
    good, bad = ["great", "fine", "lovely", "superb"], ["awful", "poor", "dull", "bad"]
    nouns = ["film", "plot", "cast", "story", "score", "ending"]
    texts, labels = [], []
    for i in range(n):
        y = i % 2
        word = (good if y else bad)[(i // 2) % 4]
        texts.append(f"the {nouns[i % 6]} was {word} and the {nouns[(i + 3) % 6]} too")
        labels.append(y)
    return texts, labels


def save_tiny_bert(out: Path, texts: list[str], seed: int = 0, kind: str = "bert",
                   tie: bool = True) -> Path:
    """Train a WordPiece tokenizer on ``texts``, build a 1-layer BERT (hidden 32) with an MLM
    head from ``seed``, and ``save_pretrained`` both into ``out``."""
    import torch
    from transformers import BertConfig, BertForMaskedLM, GPT2Config, GPT2LMHeadModel

    from fmlab.text.tokenizer import train_tokenizer

    tok = train_tokenizer(texts, kind="wordpiece" if kind == "bert" else "bpe", vocab_size=400)
    torch.manual_seed(seed)
    if kind == "bert":
        cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=64, max_position_embeddings=64,
                         pad_token_id=tok.pad_token_id, tie_word_embeddings=tie)
        model = BertForMaskedLM(cfg)
    else:
        cfg = GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=1, n_head=2, n_positions=64,
                         pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                         bos_token_id=tok.eos_token_id, tie_word_embeddings=tie)
        model = GPT2LMHeadModel(cfg)
    model.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    return out
