"""The text side of DITO, reduced: a tiny bag-of-words caption tower and word tokens of canvas captions."""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
import torch.nn as nn

from fmlab.utils.validation import positive_int


class CaptionEncoder(nn.Module):
    """A tiny bag-of-words text tower: mean of word embeddings (padding 0 ignored), then a linear map.

    Enough for canvas captions (a closed vocabulary); a real text tower can replace it.

    Args:
        vocab_size: number of token ids (0 = padding, 1 = unknown).
        width: output width D.
        dim: embedding size.

    Examples:
        >>> CaptionEncoder(5, 4)(torch.tensor([[2, 3, 0]])).shape
        torch.Size([1, 4])
    """

    def __init__(self, vocab_size: int, width: int, dim: int = 32) -> None:
        super().__init__()
        self.embed = nn.Embedding(positive_int("vocab_size", vocab_size), positive_int("dim", dim), padding_idx=0)
        self.proj = nn.Linear(dim, positive_int("width", width))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, D) caption embeddings of (B, L) token ids."""
        keep = (tokens != 0).unsqueeze(-1).float()
        mean = (self.embed(tokens) * keep).sum(1) / keep.sum(1).clamp_min(1.0)
        return self.proj(mean)


def caption_tokens(captions: Sequence[str], vocab: dict[str, int] | None = None,
                   length: int | None = None) -> tuple[torch.Tensor, dict[str, int]]:
    """Word-level token ids of captions (lower-cased words and digits; 0 = padding, 1 = unknown).

    Args:
        captions: the texts.
        vocab: word → id; None builds one from ``captions`` (ids from 2 in order of first use).
        length: tokens per caption (longer ones are cut); None = the longest caption.

    Returns:
        (int64 (B, L) ids, the vocabulary).

    Examples:
        >>> ids, vocab = caption_tokens(["a red 3", "a 7"])
        >>> ids.tolist(), caption_tokens(["a blue 3"], vocab)[0].tolist()
        ([[2, 3, 4], [2, 5, 0]], [[2, 1, 4]])
    """
    words = [re.findall(r"[a-z0-9]+", c.lower()) for c in captions]
    if vocab is None:
        vocab = {}
        for w in (w for ws in words for w in ws):
            vocab.setdefault(w, len(vocab) + 2)
    length = max((len(ws) for ws in words), default=1) if length is None else positive_int("length", length)
    ids = torch.zeros(len(words), max(length, 1), dtype=torch.int64)
    for i, ws in enumerate(words):
        for j, w in enumerate(ws[:length]):
            ids[i, j] = vocab.get(w, 1)
    return ids, vocab


def canvas_region_batch(rendered: dict, vocab: dict[str, int] | None = None,
                        length: int | None = None) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """The pre-training batch of a ``canvas`` render: images and caption tokens (no boxes, no labels).

    Args:
        rendered: the dict of :func:`fmlab.data.synthetic.canvas.render_canvas`.
        vocab: a word vocabulary to reuse (None builds one).
        length: tokens per caption.

    Returns:
        (``{"images": uint8 (B,S,S,3), "tokens": int64 (B,L)}``, the vocabulary).

    Examples:
        >>> import numpy as np
        >>> b, v = canvas_region_batch({"images": np.zeros((1, 4, 4, 3), np.uint8), "captions": ["a 3"]})
        >>> b["tokens"].tolist()
        [[2, 3]]
    """
    tokens, vocab = caption_tokens(rendered["captions"], vocab, length)
    return {"images": torch.as_tensor(rendered["images"]), "tokens": tokens}, vocab

