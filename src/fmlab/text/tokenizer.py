"""Tokenizers trained with the ``tokenizers`` library and wrapped as ``transformers`` fast tokenizers.

Three kinds, as in the papers' models:

* ``wordpiece`` (BERT/ELECTRA/ERNIE encoders): BERT normaliser (lower-casing optional),
  BERT pre-tokeniser, ``[PAD] [UNK] [CLS] [SEP] [MASK]`` as ids 0..4, and the template
  ``[CLS] A [SEP]`` (pairs ``[CLS] A [SEP] B [SEP]``);
* ``unigram`` (T5-style encoder-decoder; SentencePiece's model): Metaspace pre-tokeniser and
  ``<pad> </s> <unk>`` as ids 0..2 (T5's order), then ``[MASK] [CLS] [SEP]``, the UL2 mode tokens
  ``[NLU] [NLG] [S2S]`` and :data:`N_SENTINELS` sentinels ``<extra_id_0>..``; template ``A </s>``;
* ``bpe`` (GPT-style decoder): byte-level BPE (no unknown characters), the same special tokens
  as ``unigram``; template ``A </s>``.

Why wrap in ``PreTrainedTokenizerFast``: ``save_pretrained`` writes ``tokenizer.json`` next to a
model's ``config.json``, and ``AutoTokenizer.from_pretrained(RUN_DIR/model)`` loads it back in plain
``transformers``. Two calls with the same texts and seed write byte-identical ``tokenizer.json``
files, also in different processes (the ``tokenizers`` trainers alone do not give this for
WordPiece and unigram: see :func:`_wordpiece_vocab` and :func:`_canonical_unigram`); ``seed``
shuffles the order in which the texts are fed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fmlab.errors import ConfigError, DataError

__all__ = ["KINDS", "N_SENTINELS", "SEQ2SEQ_SPECIALS", "WORDPIECE_SPECIALS", "special_tokens",
           "tokenizer_stats", "train_tokenizer"]

KINDS = ("wordpiece", "unigram", "bpe")
N_SENTINELS = 100
WORDPIECE_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
SEQ2SEQ_SPECIALS = ("<pad>", "</s>", "<unk>", "[MASK]", "[CLS]", "[SEP]", "[NLU]", "[NLG]", "[S2S]")
MODE_TOKENS = ("[NLU]", "[NLG]", "[S2S]")


def special_tokens(kind: str) -> list[str]:
    """Every special token of a tokenizer kind, in id order.

    Examples:
        >>> special_tokens("wordpiece")
        ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']
        >>> len(special_tokens("unigram")), special_tokens("bpe")[-1]
        (109, '<extra_id_99>')
    """
    if kind == "wordpiece":
        return list(WORDPIECE_SPECIALS)
    if kind in ("unigram", "bpe"):
        return list(SEQ2SEQ_SPECIALS) + [f"<extra_id_{i}>" for i in range(N_SENTINELS)]
    raise ConfigError(f"tokenizer kind {kind!r} is not one of {', '.join(KINDS)}")


def _backend(kind: str, vocab_size: int, lowercase: bool) -> tuple[Any, Any]:
    """(untrained ``tokenizers.Tokenizer``, its trainer) for ``kind``."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    specials = special_tokens(kind)
    if kind == "wordpiece":
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        return tok, None  # trained by _wordpiece_vocab
    norm = [normalizers.NFKC()] + ([normalizers.Lowercase()] if lowercase else [])
    if kind == "unigram":
        tok = Tokenizer(models.Unigram())
        tok.normalizer = normalizers.Sequence(norm)
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        return tok, trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=specials,
                                            unk_token="<unk>", show_progress=False)
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.Sequence(norm)
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    return tok, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                    initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                    show_progress=False)


def _wordpiece_vocab(texts: Sequence[str], vocab_size: int, lowercase: bool,
                     specials: list[str]) -> list[str]:
    """WordPiece vocabulary trained deterministically (specials first, then sorted pieces).

    Why not ``WordPieceTrainer``: it gives ``##x`` continuation symbols their ids in the order of
    a hash map that changes from process to process, and BPE merges break count ties by id, so
    the same corpus gives a different vocabulary in another process. Here every continuation
    character is first renamed to a private-use code point, the alphabet is given sorted, and
    plain byte-pair merges are learned (``BpeTrainer``, deterministic once every symbol is in
    the initial alphabet) — the same merges WordPieceTrainer learns — then renamed back to ``##x``.
    """
    from collections import Counter

    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    norm = normalizers.BertNormalizer(lowercase=lowercase)
    pre = pre_tokenizers.BertPreTokenizer()
    counts: Counter[str] = Counter()
    for t in texts:
        counts.update(w for w, _ in pre.pre_tokenize_str(norm.normalize_str(t)))
    chars = sorted({c for w in counts for c in w})
    if len(chars) > 0xFFFD:
        raise DataError(f"tokenizer: {len(chars)} distinct characters are too many for WordPiece")
    cont = {c: chr(0xF0000 + i) for i, c in enumerate(chars)}
    back = {v: "##" + k for k, v in cont.items()}
    marked = sorted((w[0] + "".join(cont[c] for c in w[1:]), n) for w, n in counts.items())
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    alphabet = sorted({c for w, _ in marked for c in w})
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=alphabet, show_progress=False)
    bpe.train_from_iterator((" ".join([w] * n) for w, n in marked), trainer=trainer,
                            length=len(marked))
    pieces = set()
    for tok in bpe.get_vocab():
        if tok in specials:
            continue
        head = back[tok[0]] if tok[0] in back else tok[0]
        pieces.add(head + "".join(back[c][2:] if c in back else c for c in tok[1:]))
    return specials + sorted(pieces)


def _canonical_unigram(tok: Any, specials: list[str]) -> None:
    """Renumber a trained unigram vocabulary canonically, in place: specials keep ids 0..S-1,
    pieces follow by descending score (rounded to 1e-3), then string.

    Why: ``UnigramTrainer`` visits pieces in hash-map order, so from one run to the next
    pieces of equal frequency swap their scores (differences ~1e-4) and ids; rounding to 1e-3
    makes them ties, broken by the string.
    """
    import json

    from tokenizers import models

    score = {p: round(float(s), 3) for p, s in json.loads(tok.to_str())["model"]["vocab"]}
    rest = sorted((p for p in score if p not in set(specials)), key=lambda p: (-score[p], p))
    tok.model = models.Unigram([(p, score[p]) for p in specials + rest],
                               unk_id=specials.index("<unk>"), byte_fallback=False)


def _template(tok: Any, kind: str) -> None:
    from tokenizers import processors

    if kind == "wordpiece":
        cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    else:
        eos = tok.token_to_id("</s>")
        tok.post_processor = processors.TemplateProcessing(
            single="$A </s>", pair="$A </s> $B:1 </s>:1", special_tokens=[("</s>", eos)])


def train_tokenizer(texts: Sequence[str], *, kind: str = "wordpiece", vocab_size: int,
                    seed: int = 0, lowercase: bool = True) -> Any:
    """Train a tokenizer on ``texts`` and wrap it as a ``PreTrainedTokenizerFast``.

    Args:
        texts: the training corpus (documents or sentences).
        kind: ``wordpiece``, ``unigram`` or ``bpe`` (module doc).
        vocab_size: the target vocabulary size, special tokens included. WordPiece and BPE may
            end below it on a small corpus; WordPiece keeps every character seen, so it may end
            above it on a corpus with many distinct characters.
        seed: seeds the order in which the texts are fed.
        lowercase: lower-case before tokenising.

    Returns:
        The tokenizer (``save_pretrained(DIR)`` writes ``tokenizer.json``).

    Raises:
        ConfigError: unknown kind, or ``vocab_size`` not above the number of special tokens.
        DataError: an empty corpus.

    Examples:
        >>> tok = train_tokenizer(["the cat sat", "the dog sat"] * 5, vocab_size=40)
        >>> tok.convert_ids_to_tokens(tok("the cat")["input_ids"])
        ['[CLS]', 'the', 'cat', '[SEP]']
    """
    from transformers import PreTrainedTokenizerFast

    specials = special_tokens(kind)
    if int(vocab_size) <= len(specials):
        raise ConfigError(f"tokenizer.vocab_size: {vocab_size} is not above the {len(specials)} "
                          f"special tokens of a {kind} tokenizer ({', '.join(specials[:6])}"
                          f"{', ...' if len(specials) > 6 else ''})")
    texts = [t for t in texts if t and t.strip()]
    if not texts:
        raise DataError("tokenizer: empty corpus (no non-blank text to train on)")
    order = np.random.default_rng(int(seed)).permutation(len(texts))
    tok, trainer = _backend(kind, int(vocab_size), lowercase)
    if kind == "wordpiece":
        from tokenizers import models

        vocab = _wordpiece_vocab([texts[i] for i in order], int(vocab_size), lowercase, specials)
        tok.model = models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]")
    else:
        tok.train_from_iterator((texts[i] for i in order), trainer=trainer, length=len(texts))
    if kind == "unigram":
        _canonical_unigram(tok, specials)
    _template(tok, kind)
    if kind == "wordpiece":
        return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                       cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
        mask_token="[MASK]", cls_token="[CLS]", sep_token="[SEP]",
        additional_special_tokens=list(MODE_TOKENS) + specials[len(SEQ2SEQ_SPECIALS):])


def tokenizer_stats(tokenizer: Any, texts: Sequence[str], batch: int = 1000) -> dict[str, float]:
    """Tokens per word and the fraction of words split into several pieces.

    Words are the whitespace-separated words of each text (the same for every tokenizer kind, so
    kinds compare); a token belongs to the word its first character falls in (offset mapping),
    special tokens are not counted. A word with attached punctuation (``lord!``) counts as split
    when the tokenizer separates the punctuation.

    Args:
        tokenizer: a fast tokenizer.
        texts: the corpus to measure.
        batch: texts encoded per call.

    Returns:
        ``{"tokens_per_word", "split_word_fraction", "words", "tokens"}``.

    Examples:
        >>> tok = train_tokenizer(["the cat sat", "the dog sat"] * 5, vocab_size=40)
        >>> tokenizer_stats(tok, ["the cat"])["tokens_per_word"]
        1.0
    """
    import re

    words = tokens = split = 0
    for start in range(0, len(texts), batch):
        chunk = list(texts[start:start + batch])
        enc = tokenizer(chunk, add_special_tokens=False, return_offsets_mapping=True)
        for text, offsets in zip(chunk, enc["offset_mapping"], strict=True):
            ends = [m.end() for m in re.finditer(r"\S+", text)]
            if not ends:
                continue
            # first character of each token that covers text -> index of its whitespace word
            starts = [a + (len(text[a:b]) - len(text[a:b].lstrip())) for a, b in offsets if b > a]
            counts = np.bincount(np.searchsorted(ends, starts, side="right"), minlength=len(ends))
            words += len(ends)
            tokens += int(counts.sum())
            split += int((counts > 1).sum())
    if words == 0:
        raise DataError("tokenizer stats: the texts hold no words")
    return {"tokens_per_word": tokens / words, "split_word_fraction": split / words,
            "words": float(words), "tokens": float(tokens)}


def tokenizer_from_source(spec: str, out: Any, *, kind: str = "wordpiece", vocab_size: int,
                          split: str = "train", limit: int | None = None, seed: int = 0,
                          lowercase: bool = True, measure: Sequence[str] = (),
                          data_root: Any = None) -> dict[str, Any]:
    """Train a tokenizer on one split of a text source, save it and measure it (``fmlab text
    tokenizer``).

    Args:
        spec: a text source (:func:`fmlab.data.text.load_text`).
        out: folder for ``tokenizer.json`` (+ ``tokenizer_config.json``) and ``tokenizer_stats.json``.
        kind, vocab_size, seed, lowercase: see :func:`train_tokenizer`.
        split: the split trained on.
        limit: train on a seeded subset of this many records.
        measure: further sources whose ``test`` split is measured too (any corpus).
        data_root: folder of the named datasets.

    Returns:
        The record written to ``tokenizer_stats.json``: source, split hash, kind, vocabulary
        size and ``stats`` per measured ``source:split``.
    """
    from pathlib import Path

    from fmlab.data.text import load_text
    from fmlab.utils.io import write_json

    data = load_text(spec, split, data_root=data_root, limit=limit)
    tok = train_tokenizer(data.texts, kind=kind, vocab_size=vocab_size, seed=seed,
                          lowercase=lowercase)
    stats = {f"{spec}:{split}": tokenizer_stats(tok, data.texts)}
    for other in [spec, *measure]:
        held = load_text(other, "test", data_root=data_root)  # every text source has one
        stats[f"{other}:{held.split}"] = tokenizer_stats(tok, held.texts)
    out = Path(out)
    tok.save_pretrained(str(out))
    record = {"source": spec, "split": split, "split_hash": data.split_hash, "n_texts": len(data),
              "kind": kind, "vocab_size_requested": int(vocab_size), "vocab_size": len(tok),
              "seed": int(seed), "lowercase": bool(lowercase), "stats": stats}
    write_json(out / "tokenizer_stats.json", record)
    return record
