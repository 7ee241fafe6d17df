"""Token streams into training batches: fixed-length blocks for language-model corpora, and
dynamically padded examples for classification.

Both end as engine sources (``len`` + ``get_batch(indices) -> dict of tensors``), so the data order
is the engine's seeded per-epoch permutation and a resumed run sees exactly the batches it would
have seen (:mod:`fmlab.engine.data`).

Packing follows the tokenizer's own template: the special tokens it puts *before* a single text
(``[CLS]`` for WordPiece) start every block, and those it puts *after* (``[SEP]``, ``</s>``)
separate documents in the stream. Blocks are cut from the concatenated stream with no padding;
the tail that does not fill a block is dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from fmlab.errors import ConfigError, DataError

__all__ = ["BlockSource", "ExampleSource", "encode_examples", "pack_blocks", "pad_collate",
           "template_specials", "token_stream"]


def template_specials(tokenizer: Any) -> tuple[list[int], list[int]]:
    """(ids the tokenizer puts before a single text, ids it puts after), from its template.

    Examples:
        >>> from fmlab.text.tokenizer import train_tokenizer
        >>> tok = train_tokenizer(["a b c"] * 3, vocab_size=30)
        >>> template_specials(tok)
        ([2], [3])
    """
    plain = tokenizer("x", add_special_tokens=False)["input_ids"]
    full = tokenizer("x", add_special_tokens=True)["input_ids"]
    at = next((i for i in range(len(full) - len(plain) + 1)
               if full[i:i + len(plain)] == plain), 0)
    return list(full[:at]), list(full[at + len(plain):])


def token_stream(texts: Sequence[str], tokenizer: Any, add_special: bool = True,
                 batch: int = 1000) -> np.ndarray:
    """All documents' token ids concatenated, each followed by the template's suffix ids.

    Args:
        texts: documents.
        tokenizer: a fast tokenizer.
        add_special: put the separator after every document.
        batch: documents encoded per call.

    Returns:
        int64 ids.
    """
    suffix = template_specials(tokenizer)[1] if add_special else []
    parts: list[int] = []
    for start in range(0, len(texts), batch):
        for ids in tokenizer(list(texts[start:start + batch]), add_special_tokens=False)["input_ids"]:
            parts.extend(ids)
            parts.extend(suffix)
    return np.asarray(parts, dtype=np.int64)


def pack_blocks(texts: Sequence[str], tokenizer: Any, block_size: int, *,
                add_special: bool = True) -> torch.Tensor:
    """Cut the token stream of ``texts`` into ``(N, block_size)`` blocks (module doc).

    Args:
        texts: documents (e.g. :func:`fmlab.data.text.load_text` ``.texts``).
        tokenizer: a fast tokenizer.
        block_size: tokens per block, the template's prefix included.
        add_special: separators between documents and the prefix at each block's start.

    Returns:
        int64 tensor ``(N, block_size)``.

    Raises:
        ConfigError: ``block_size`` too small for the prefix.
        DataError: the corpus gives less than one block.

    Examples:
        >>> from fmlab.text.tokenizer import train_tokenizer
        >>> tok = train_tokenizer(["a b c d"] * 4, vocab_size=30)
        >>> pack_blocks(["a b c d"] * 4, tok, 6).shape
        torch.Size([4, 6])
    """
    prefix = template_specials(tokenizer)[0] if add_special else []
    body = int(block_size) - len(prefix)
    if body < 1:
        raise ConfigError(f"block_size: {block_size} leaves no room after the {len(prefix)} "
                          "special token(s) that start a block")
    stream = token_stream(texts, tokenizer, add_special)
    n = len(stream) // body
    if n == 0:
        raise DataError(f"packing: the corpus has {len(stream)} tokens, fewer than one block of "
                        f"{body}; use a smaller block_size or more text")
    blocks = stream[:n * body].reshape(n, body)
    if prefix:
        blocks = np.concatenate([np.tile(np.asarray(prefix, np.int64), (n, 1)), blocks], axis=1)
    return torch.from_numpy(np.ascontiguousarray(blocks))


def encode_examples(texts: Sequence[str], tokenizer: Any, max_length: int,
                    labels: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """Encode texts (with the template's special tokens), truncated to ``max_length``.

    Args:
        texts: one text per example.
        tokenizer: a fast tokenizer.
        max_length: tokens per example at most, special tokens included.
        labels: optional integer label per text.

    Returns:
        One ``{"input_ids": LongTensor, ["labels": int]}`` per text.

    Examples:
        >>> from fmlab.text.tokenizer import train_tokenizer
        >>> tok = train_tokenizer(["a b c"] * 3, vocab_size=30)
        >>> [e["input_ids"].tolist() for e in encode_examples(["a b c"], tok, 4)]
        [[2, 5, 6, 3]]
    """
    if max_length < 2:
        raise ConfigError(f"max_length: {max_length} must be >= 2")
    if labels is not None and len(labels) != len(texts):
        raise DataError(f"encode_examples: {len(texts)} texts but {len(labels)} labels")
    enc = tokenizer(list(texts), truncation=True, max_length=int(max_length))["input_ids"]
    out: list[dict[str, Any]] = [{"input_ids": torch.as_tensor(ids, dtype=torch.int64)}
                                 for ids in enc]
    if labels is not None:
        for e, y in zip(out, labels, strict=True):
            e["labels"] = int(y)
    return out


def pad_collate(examples: Sequence[dict[str, Any]], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """Pad a list of examples to their longest one (dynamic padding).

    Args:
        examples: dicts with ``input_ids`` (1-D ids) and optionally ``labels`` (int).
        pad_id: the tokenizer's ``pad_token_id``.

    Returns:
        ``input_ids`` (B, L), ``attention_mask`` (B, L; 1 on real tokens) and ``labels`` (B,)
        when the examples have them.

    Examples:
        >>> b = pad_collate([{"input_ids": [5, 6, 7]}, {"input_ids": [8]}], pad_id=0)
        >>> b["input_ids"].tolist(), b["attention_mask"].tolist()
        ([[5, 6, 7], [8, 0, 0]], [[1, 1, 1], [1, 0, 0]])
    """
    if not examples:
        raise DataError("pad_collate: no examples")
    ids = [torch.as_tensor(e["input_ids"], dtype=torch.int64) for e in examples]
    length = max(len(t) for t in ids)
    input_ids = torch.full((len(ids), length), int(pad_id), dtype=torch.int64)
    mask = torch.zeros((len(ids), length), dtype=torch.int64)
    for i, t in enumerate(ids):
        input_ids[i, :len(t)] = t
        mask[i, :len(t)] = 1
    out = {"input_ids": input_ids, "attention_mask": mask}
    if "labels" in examples[0]:
        out["labels"] = torch.as_tensor([int(e["labels"]) for e in examples], dtype=torch.int64)
    return out


class BlockSource:
    """Engine source over packed blocks: ``get_batch`` gives ``{"input_ids": (B, block_size)}``."""

    def __init__(self, blocks: torch.Tensor) -> None:
        self.blocks = torch.as_tensor(blocks, dtype=torch.int64)
        if self.blocks.ndim != 2:
            raise DataError(f"BlockSource: blocks must be 2-D, got shape {tuple(self.blocks.shape)}")

    def __len__(self) -> int:
        return len(self.blocks)

    def get_batch(self, indices: np.ndarray) -> dict[str, torch.Tensor]:
        return {"input_ids": self.blocks[torch.as_tensor(np.asarray(indices, dtype=np.int64))]}


class ExampleSource:
    """Engine source over encoded examples, padded per batch by :func:`pad_collate`.

    Attributes:
        labels: int64 label per example (numpy) when the examples have labels, else None.
    """

    def __init__(self, examples: Sequence[dict[str, Any]], pad_id: int) -> None:
        self.examples = list(examples)
        self.pad_id = int(pad_id)
        self.labels = (np.asarray([e["labels"] for e in self.examples], dtype=np.int64)
                       if self.examples and "labels" in self.examples[0] else None)

    def __len__(self) -> int:
        return len(self.examples)

    def get_batch(self, indices: np.ndarray) -> dict[str, torch.Tensor]:
        return pad_collate([self.examples[int(i)] for i in np.asarray(indices).reshape(-1)],
                           self.pad_id)
