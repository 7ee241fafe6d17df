"""Word-level text side of VL-GPT (reduced): a vocabulary built from the training captions, and the
unigram baseline that caption perplexity is compared with.

A word vocabulary (not WordPiece) because the captions here are templated: a few dozen distinct words,
so every word is one token, perplexities are per word, and the vocabulary saved with a run is a short
JSON list. Text is lower-cased and split on whitespace with punctuation as separate words.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

import torch

from fmlab.errors import DataError

__all__ = ["BOI", "BOS", "EOS", "PAD", "UNK", "WordVocab", "unigram_perplexity", "words"]

PAD, BOS, EOS, BOI, UNK = 0, 1, 2, 3, 4
SPECIALS = ("<pad>", "<bos>", "<eos>", "<boi>", "<unk>")
_WORD = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")


def words(text: str) -> list[str]:
    """Lower-cased words and punctuation marks of ``text``.

    Examples:
        >>> words("A photo of a 7.")
        ['a', 'photo', 'of', 'a', '7', '.']
    """
    return _WORD.findall(str(text).lower())


class WordVocab:
    """Token ids: ``<pad>=0, <bos>=1, <eos>=2, <boi>=3`` (begin of image), ``<unk>=4``, then words.

    Args:
        vocabulary: the words, in id order after the specials.

    Examples:
        >>> v = WordVocab.from_captions(["a red 7", "a blue 1"])
        >>> v.encode("a red 1"), v.decode([7, 9, 5, 2, 7])
        ([7, 9, 5, 2], 'a red 1')
    """

    def __init__(self, vocabulary: Sequence[str]) -> None:
        self.words = [str(w) for w in vocabulary]
        if len(set(self.words)) != len(self.words) or any(w in SPECIALS for w in self.words):
            raise DataError("vocabulary: words must be unique and not special tokens")
        self.itos = list(SPECIALS) + self.words
        self.stoi = {w: i for i, w in enumerate(self.itos)}

    @classmethod
    def from_captions(cls, captions: Sequence[str]) -> WordVocab:
        """Every word of ``captions``, sorted (so the ids do not depend on caption order)."""
        vocab = sorted({w for c in captions for w in words(c)})
        if not vocab:
            raise DataError("captions: no words to build a vocabulary from")
        return cls(vocab)

    @property
    def size(self) -> int:
        return len(self.itos)

    def encode(self, text: str, strict: bool = False) -> list[int]:
        """Word ids of ``text`` followed by EOS; unknown words are ``<unk>`` (an error with ``strict``).

        Raises:
            fmlab.errors.DataError: empty text, or an unknown word with ``strict``.
        """
        ws = words(text)
        if not ws:
            raise DataError(f"caption: {text!r} is empty (no words)")
        if strict:
            bad = [w for w in ws if w not in self.stoi]
            if bad:
                raise DataError(f"caption: {text!r} has word {bad[0]!r} outside the model's vocabulary "
                                f"({', '.join(self.words[:20])}{' ...' if len(self.words) > 20 else ''})")
        return [self.stoi.get(w, UNK) for w in ws] + [EOS]

    def encode_batch(self, texts: Sequence[str]) -> torch.Tensor:
        """``(N, T)`` int64 ids (words, EOS, then PAD) of ``texts``."""
        rows = [self.encode(t) for t in texts]
        out = torch.full((len(rows), max(len(r) for r in rows)), PAD, dtype=torch.long)
        for i, r in enumerate(rows):
            out[i, :len(r)] = torch.tensor(r)
        return out

    def decode(self, ids: Sequence[int]) -> str:
        """Words up to the first EOS, joined by spaces (specials skipped)."""
        out = []
        for t in list(ids):
            t = int(t)
            if t == EOS:
                break
            if t > UNK:
                out.append(self.itos[t])
        return " ".join(out)


def unigram_perplexity(train_ids: torch.Tensor, test_ids: torch.Tensor, vocab_size: int) -> float:
    """Perplexity of ``test_ids`` under the add-one unigram distribution of ``train_ids`` (PAD ignored).

    The baseline a captioner must beat: it knows how often each word (and EOS) occurs in training
    captions, nothing about the image or the word order.

    Args:
        train_ids: ``(N, T)`` training caption ids (words + EOS, PAD-padded).
        test_ids: ``(M, T')`` test caption ids.
        vocab_size: number of ids.

    Returns:
        ``exp(mean -log p(token))`` over the non-PAD test tokens.

    Examples:
        >>> round(unigram_perplexity(torch.tensor([[5, 2]]), torch.tensor([[5, 2]]), 6), 3)  # p = 2/8
        4.0
    """
    counts = Counter(int(t) for t in train_ids.flatten().tolist() if t != PAD)
    total = sum(counts.values()) + vocab_size
    test = [int(t) for t in test_ids.flatten().tolist() if t != PAD]
    if not test:
        raise DataError("test captions: no tokens")
    nll = -sum(math.log((counts.get(t, 0) + 1) / total) for t in test) / len(test)
    return math.exp(nll)
