"""DPTR: pre-train a text-recognition decoder on text embeddings only, then plug in image features.

Decoder Pre-training with only Text for scene text Recognition (DPTR, papers.md entry 57): an
autoregressive character decoder reads a sequence of "visual" tokens ``(B, N, D)`` through
cross-attention and predicts the transcription. In pre-training the tokens are the text tower's
token embeddings of the transcription itself ("pseudo-visual" tokens); Offline Randomised
Perturbation (ORP) adds ``beta * e_img`` of a randomly chosen image embedding,
``beta ~ U(0, beta_max)`` per sample, so the decoder does not rely on features that only text
embeddings have (the modality gap). In fine-tuning the image tower's tokens of rendered strings
replace them and nothing is perturbed.

The decoder is a ``nn.TransformerDecoder`` rather than a GRU: its cross-attention reads a token
sequence of any length ``N`` directly (text tokens in pre-training, feature-map columns in
fine-tuning), where a GRU would need an attention module bolted on to do the same; and teacher
forcing trains all positions in one parallel pass. It adds no position embedding to the memory:
text towers and image feature maps carry their own (columns keep their left-to-right order).

Pieces here: :class:`CharVocab` (symbols + PAD/BOS/EOS), :class:`CharDecoder` (teacher forcing,
:meth:`CharDecoder.greedy`), :class:`FixedTextTokens` (a fixed random embedding table standing in for
a text tower). ORP and the two-stage objective are in :mod:`fmlab.multimodal.dptr`
(:func:`~fmlab.multimodal.dptr.orp_perturb`, :class:`~fmlab.multimodal.dptr.DPTRObjective`).
"""

from __future__ import annotations

import math  # noqa: F401  (used in the doctests)
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from fmlab.errors import DataError, ModelError
from fmlab.utils.validation import check, finite_float, positive_int

__all__ = ["BOS", "EOS", "PAD", "CharDecoder", "CharVocab", "FixedTextTokens", "sequence_loss",
           "teacher_forced_inputs"]

PAD, BOS, EOS = 0, 1, 2
N_SPECIAL = 3


class CharVocab:
    """Token ids of a symbol set: ``PAD=0, BOS=1, EOS=2``, then symbol ``k`` (class ``k``) as ``k + 3``.

    Args:
        symbols: the text of each class, e.g. ``"0".."9"`` (a symbol may be longer than one character).
        sep: put between symbols in a transcription (as ``render_strings(sep=...)`` does).

    Examples:
        >>> v = CharVocab.digits()
        >>> v.size, v.encode_texts(["12"], max_len=3).tolist()
        (13, [[4, 5, 2, 0]])
        >>> v.decode(torch.tensor([[4, 5, 2, 7]]))
        ['12']
    """

    def __init__(self, symbols: Sequence[str], sep: str = "") -> None:
        self.symbols = [str(s) for s in symbols]
        check(len(self.symbols) > 0 and all(self.symbols), "symbols", symbols, "must be non-empty strings")
        check(len(set(self.symbols)) == len(self.symbols), "symbols", symbols, "must be unique")
        self.sep = sep
        self.size = len(self.symbols) + N_SPECIAL
        self._index = {s: k for k, s in enumerate(self.symbols)}
        self._by_length = sorted(self.symbols, key=len, reverse=True)

    @classmethod
    def digits(cls) -> CharVocab:
        """The vocabulary of digit strings (MNIST classes): symbols ``"0".."9"``."""
        return cls([str(d) for d in range(10)])

    def split(self, text: str) -> list[int]:
        """Class index of each symbol of ``text`` (longest symbol first where ``sep`` is empty)."""
        if self.sep:
            parts = text.split(self.sep) if text else []
            bad = [p for p in parts if p not in self._index]
            if bad:
                raise DataError(f"texts: {text!r} has symbol {bad[0]!r} outside the vocabulary")
            return [self._index[p] for p in parts]
        out, i = [], 0
        while i < len(text):
            hit = next((s for s in self._by_length if text.startswith(s, i)), None)
            if hit is None:
                raise DataError(f"texts: {text!r} has {text[i]!r} outside the vocabulary")
            out.append(self._index[hit])
            i += len(hit)
        return out

    def encode_labels(self, labels: torch.Tensor, max_len: int) -> torch.Tensor:
        """Targets ``(B, max_len + 1)``: symbols, EOS, then PAD, from class labels ``(B, L)`` (-1 past the end).

        Args:
            labels: int ``(B, L)`` class of each character left to right; negative past the string's end.
            max_len: longest string the decoder reads.

        Returns:
            int64 ``(B, max_len + 1)`` token ids on the labels' device.
        """
        labels = torch.as_tensor(labels).long()
        check(labels.ndim == 2, "labels", tuple(labels.shape), "must be (B, L)")
        valid = labels >= 0
        check(bool((labels[valid] < len(self.symbols)).all()), "labels", int(labels.max()),
              f"must be < {len(self.symbols)} symbols")
        lengths = valid.sum(1)
        check(bool((lengths <= max_len).all()), "labels", int(lengths.max()), f"length must be <= max_len {max_len}")
        out = torch.full((len(labels), max_len + 1), PAD, dtype=torch.long, device=labels.device)
        width = min(labels.shape[1], max_len)
        out[:, :width] = torch.where(valid[:, :width], labels[:, :width] + N_SPECIAL, PAD)
        out[torch.arange(len(labels), device=labels.device), lengths] = EOS
        return out

    def encode_texts(self, texts: Sequence[str], max_len: int) -> torch.Tensor:
        """Targets ``(B, max_len + 1)`` of transcriptions (see :meth:`encode_labels`)."""
        rows = [self.split(t) for t in texts]
        labels = torch.full((len(rows), max(max((len(r) for r in rows), default=0), 1)), -1, dtype=torch.long)
        for i, r in enumerate(rows):
            labels[i, :len(r)] = torch.tensor(r, dtype=torch.long)
        return self.encode_labels(labels, max_len)

    def labels_to_texts(self, labels: torch.Tensor) -> list[str]:
        """Transcriptions of class labels ``(B, L)`` (negative entries end the string)."""
        return [self.sep.join(self.symbols[k] for k in row if k >= 0) for row in torch.as_tensor(labels).tolist()]

    def decode(self, ids: torch.Tensor) -> list[str]:
        """Texts of token ids ``(B, T)``: symbols up to the first EOS; PAD and BOS are skipped."""
        out = []
        for row in torch.as_tensor(ids).tolist():
            row = row[:row.index(EOS)] if EOS in row else row
            out.append(self.sep.join(self.symbols[t - N_SPECIAL] for t in row if t >= N_SPECIAL))
        return out


def teacher_forced_inputs(targets: torch.Tensor) -> torch.Tensor:
    """Decoder inputs for teacher forcing: BOS, then the targets shifted right by one.

    Args:
        targets: int64 ``(B, T)`` target token ids (symbols, EOS, PAD).

    Returns:
        int64 ``(B, T)``: position ``t`` holds the token the decoder reads to predict ``targets[:, t]``.

    Examples:
        >>> teacher_forced_inputs(torch.tensor([[4, 5, 2, 0]])).tolist()
        [[1, 4, 5, 2]]
    """
    return torch.cat([torch.full_like(targets[:, :1], BOS), targets[:, :-1]], dim=1)


def sequence_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the non-PAD target tokens (the EOS token included).

    Args:
        logits: ``(B, T, V)`` decoder outputs.
        targets: int64 ``(B, T)`` token ids.

    Returns:
        A scalar tensor.

    Examples:
        >>> logits = torch.zeros(1, 3, 5)  # uniform over 5 ids: log(5) per counted token
        >>> round(float(sequence_loss(logits, torch.tensor([[3, 2, 0]]))), 4) == round(math.log(5), 4)
        True
    """
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=PAD)


class CharDecoder(nn.Module):
    """Autoregressive character decoder: causal self-attention over the prefix, cross-attention to memory.

    Args:
        vocab_size: number of token ids (:attr:`CharVocab.size`).
        memory_dim: width D of the memory tokens ``(B, N, D)``.
        max_len: longest string it writes (it writes at most ``max_len`` symbols, then EOS).
        d_model: decoder width.
        heads: attention heads (must divide ``d_model``).
        layers: decoder layers.
        dropout: dropout in the layers (0 keeps training deterministic for a seed).

    Examples:
        >>> dec = CharDecoder(13, memory_dim=8, max_len=4, d_model=16, heads=2, layers=1)
        >>> memory = torch.randn(2, 5, 8)
        >>> dec(memory, torch.tensor([[1, 4], [1, 5]])).shape
        torch.Size([2, 2, 13])
        >>> dec.greedy(memory).shape[1] <= 5
        True
    """

    def __init__(self, vocab_size: int, memory_dim: int, max_len: int, d_model: int = 64, heads: int = 4,
                 layers: int = 2, dropout: float = 0.0) -> None:
        super().__init__()
        self.vocab_size = positive_int("vocab_size", vocab_size)
        check(self.vocab_size > N_SPECIAL, "vocab_size", vocab_size, f"must be > {N_SPECIAL} (PAD, BOS, EOS)")
        self.memory_dim = positive_int("memory_dim", memory_dim)
        self.max_len = positive_int("max_len", max_len)
        d_model, heads = positive_int("d_model", d_model), positive_int("heads", heads)
        check(d_model % heads == 0, "heads", heads, f"must divide d_model {d_model}")
        self.memory_proj = nn.Linear(self.memory_dim, d_model)
        self.embed = nn.Embedding(vocab_size, d_model, padding_idx=PAD)
        self.pos = nn.Parameter(torch.randn(self.max_len + 1, d_model) * 0.02)
        layer = nn.TransformerDecoderLayer(d_model, heads, 4 * d_model, finite_float("dropout", dropout, low=0.0,
                                           high=1.0), batch_first=True, norm_first=True)
        self.layers = nn.TransformerDecoder(layer, positive_int("layers", layers))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)

    def _check_memory(self, memory: torch.Tensor) -> None:
        if memory.ndim != 3 or memory.shape[-1] != self.memory_dim:
            raise ModelError(f"memory: shape {tuple(memory.shape)} must be (B, N, {self.memory_dim})")

    def _decode(self, mem: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        t = inputs.shape[1]
        if t > self.max_len + 1:
            raise ModelError(f"inputs: {t} positions exceed max_len + 1 = {self.max_len + 1}")
        x = self.embed(inputs) + self.pos[:t]
        causal = nn.Transformer.generate_square_subsequent_mask(t, device=inputs.device, dtype=x.dtype)
        return self.head(self.norm(self.layers(x, mem, tgt_mask=causal, tgt_is_causal=True)))

    def forward(self, memory: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits ``(B, T, V)``: position ``t`` predicts token ``t + 1`` of the string.

        Args:
            memory: ``(B, N, memory_dim)`` visual (or pseudo-visual) tokens.
            inputs: int64 ``(B, T)`` BOS-prefixed tokens (:func:`teacher_forced_inputs`), ``T <= max_len + 1``.

        Returns:
            ``(B, T, vocab_size)`` logits.
        """
        self._check_memory(memory)
        return self._decode(self.memory_proj(memory), inputs)

    @torch.no_grad()
    def greedy(self, memory: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
        """Greedy decoding: the most likely symbol at each step until EOS, at most ``max_len`` symbols.

        PAD and BOS are never emitted; after ``max_len`` symbols EOS is forced; rows that have ended
        are padded with PAD, and decoding stops when every row has ended.

        Args:
            memory: ``(B, N, memory_dim)`` tokens.
            max_len: longest output (default and upper bound: the decoder's ``max_len``).

        Returns:
            int64 ``(B, T)`` token ids, ``T <= max_len + 1``, for :meth:`CharVocab.decode`.
        """
        self._check_memory(memory)
        steps = self.max_len if max_len is None else min(positive_int("max_len", max_len), self.max_len)
        mem = self.memory_proj(memory)
        inp = torch.full((len(memory), 1), BOS, dtype=torch.long, device=memory.device)
        done = torch.zeros(len(memory), dtype=torch.bool, device=memory.device)
        out = []
        for t in range(steps + 1):
            logits = self._decode(mem, inp)[:, -1].clone()
            logits[:, [PAD, BOS]] = float("-inf")
            if t == steps:
                logits[:, N_SPECIAL:] = float("-inf")
            nxt = torch.where(done, torch.full_like(inp[:, 0], PAD), logits.argmax(-1))
            out.append(nxt)
            done = done | (nxt == EOS)
            if bool(done.all()):
                break
            inp = torch.cat([inp, nxt[:, None]], dim=1)
        return torch.stack(out, dim=1)


class FixedTextTokens(nn.Module):
    """Pseudo-visual tokens from a fixed random table: token ``i`` = ``table[symbol_i] + position[i]``.

    A stand-in for a text tower's token embeddings (tests, quick studies): frozen buffers, so the
    same text always gives the same tokens. Slots past the string (after its EOS token) are zero.

    Args:
        vocab: the symbol vocabulary.
        dim: token width D.
        max_len: number of tokens N (longest string + 1 for the EOS token).
        seed: seed of the table.

    Examples:
        >>> tok = FixedTextTokens(CharVocab.digits(), dim=8, max_len=4)
        >>> e = tok(["12", "3"])
        >>> e.shape, bool((e[1, 2:] == 0).all())
        (torch.Size([2, 5, 8]), True)
    """

    def __init__(self, vocab: CharVocab, dim: int, max_len: int, seed: int = 0) -> None:
        super().__init__()
        self.vocab, self.max_len = vocab, positive_int("max_len", max_len)
        g = torch.Generator().manual_seed(seed)
        dim = positive_int("dim", dim)
        self.register_buffer("table", torch.randn(vocab.size, dim, generator=g) / dim ** 0.5)
        self.register_buffer("position", torch.randn(self.max_len + 1, dim, generator=g) / dim ** 0.5)

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        """Tokens ``(B, max_len + 1, D)`` of ``texts``."""
        ids = self.vocab.encode_texts(texts, self.max_len).to(self.table.device)
        return (self.table[ids] + self.position) * (ids != PAD)[..., None]

