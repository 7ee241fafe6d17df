"""Masking units for whole-word and knowledge masking, packed alongside the token ids.

A unit is a run of tokens masked together: a word's sub-word pieces (whole-word masking), or an
entity / phrase (ERNIE knowledge masking). Entities are found on the raw text, then mapped to
tokens through the fast tokenizer's offsets (a token belongs to an entity when its first
character lies inside the entity's characters):

* ``terms``: user phrases, matched case-insensitively on word boundaries;
* ``markers``: ChemProt's ``<< ... >>`` and ``[[ ... ]]``: the text between the markers (the
  marker tokens themselves stay visible, as in the fine-tuning input);
* ``heuristic``: runs of two or more capitalised words (``Tumor Necrosis Factor``) and
  acronym-like words with capitals and digits or hyphens (``IL-6``, ``TNF``): a capitalised /
  noun-phrase proxy that needs no tagger.

Overlapping entities merge. Blocks hold the same ids as :func:`fmlab.text.packing.pack_blocks`; ``units[b, i]`` is the position (in block b) of the first token of token
i's unit, so a unit cut by a block boundary becomes two units, one per block.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from fmlab.errors import DataError

__all__ = ["UnitBlockSource", "entity_spans", "pack_with_units", "units_from_groups"]

_MARKERS = re.compile(r"<<\s*(.+?)\s*>>|\[\[\s*(.+?)\s*\]\]")
_CAP_RUN = re.compile(r"\b[A-Z][\w-]*(?:\s+[A-Z][\w-]*)+")
_ACRONYM = re.compile(r"\b(?=[\w-]*[A-Z])(?=[\w-]*[\d-]|[A-Z]{2})[A-Za-z][\w-]*[\w]")


def entity_spans(text: str, terms: Sequence[str] = (), markers: bool = False,
                 heuristic: bool = False) -> list[tuple[int, int]]:
    """Character spans ``[start, end)`` of the entities / phrases in ``text``, merged.

    Examples:
        >>> t = "<< Aspirin >> inhibits [[ COX-2 ]] in Tumor Necrosis cells"
        >>> [t[a:b] for a, b in entity_spans(t, markers=True)]
        ['Aspirin', 'COX-2']
        >>> [t[a:b] for a, b in entity_spans(t, terms=["tumor necrosis"])]
        ['Tumor Necrosis']
        >>> u = "the IL-6 and Tumor Necrosis Factor"
        >>> [u[a:b] for a, b in entity_spans(u, heuristic=True)]
        ['IL-6', 'Tumor Necrosis Factor']
    """
    spans: list[tuple[int, int]] = []
    if markers:
        for m in _MARKERS.finditer(text):
            g = 1 if m.group(1) is not None else 2
            spans.append((m.start(g), m.end(g)))
    for term in terms:
        if term.strip():
            pat = r"(?<!\w)" + re.escape(term.strip()) + r"(?!\w)"
            spans += [(m.start(), m.end()) for m in re.finditer(pat, text, re.IGNORECASE)]
    if heuristic:
        spans += [(m.start(), m.end()) for m in _CAP_RUN.finditer(text)]
        spans += [(m.start(), m.end()) for m in _ACRONYM.finditer(text)]
    merged: list[tuple[int, int]] = []
    for a, b in sorted(spans):
        if merged and a < merged[-1][1]:
            merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
        else:
            merged.append((a, b))
    return merged


def _doc_groups(text: str, tokenizer: Any, spec: Any) -> tuple[list[int], list[int]]:
    """(ids, group key per token) of one document without special tokens; equal keys in a run
    form one unit (entity spans get keys >= 1e6, other tokens their word's index)."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets, words = enc["input_ids"], enc["offset_mapping"], enc.word_ids()
    spans = (entity_spans(text, spec.terms, spec.markers, spec.heuristic)
             if spec.kind == "knowledge" else [])
    starts = np.array([a for a, _ in spans], dtype=np.int64)
    groups = []
    for i, ((a, b), w) in enumerate(zip(offsets, words, strict=True)):
        j = int(np.searchsorted(starts, a, side="right")) - 1
        if b > a and j >= 0 and a < spans[j][1]:
            groups.append(1_000_000 + j)
        else:
            groups.append(w if w is not None else 500_000 + i)
    return ids, groups


def units_from_groups(groups: torch.Tensor) -> torch.Tensor:
    """(N, L) group keys -> (N, L) position of the first token of each token's run.

    Examples:
        >>> units_from_groups(torch.tensor([[7, 7, 3, 5, 5, 5]])).tolist()
        [[0, 0, 2, 3, 3, 3]]
    """
    n, L = groups.shape
    pos = torch.arange(L).expand(n, L)
    start = torch.ones_like(groups, dtype=torch.bool)
    start[:, 1:] = groups[:, 1:] != groups[:, :-1]
    return torch.where(start, pos, torch.zeros_like(pos)).cummax(dim=1).values


def pack_with_units(texts: Sequence[str], tokenizer: Any, block_size: int, spec: Any
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Encode, concatenate and cut ``texts`` into blocks, with their masking units.

    The ids are exactly :func:`fmlab.text.packing.pack_blocks`'s: the template's prefix
    (``[CLS]``) starts every block and its suffix (``[SEP]``, ``</s>``) follows every document;
    special tokens are units of their own.

    Args:
        texts: the documents.
        tokenizer: a fast tokenizer (offsets and word ids).
        block_size: tokens per block, the prefix included.
        spec: a :class:`fmlab.text.objectives.UnitSpec`.

    Returns:
        ``(input_ids, units)``, both (N, block_size) int64.

    Raises:
        DataError: the texts give less than one block.
    """
    from fmlab.text.packing import template_specials

    prefix, suffix = template_specials(tokenizer)
    body = block_size - len(prefix)
    if body < 1:
        raise DataError(f"data.block_size: {block_size} leaves no room after the block prefix")
    ids_all: list[int] = []
    groups_all: list[int] = []
    for d, text in enumerate(texts):
        ids, groups = _doc_groups(text, tokenizer, spec)
        ids_all += ids + suffix
        key = 4_000_000 * (d + 1)  # distinct keys per document; suffix tokens: their own
        groups_all += [key + g for g in groups] + [-(len(groups_all) + len(groups) + k + 1)
                                                   for k in range(len(suffix))]
    n = len(ids_all) // body
    if n == 0:
        raise DataError(f"corpus: {len(ids_all)} tokens do not fill one block of {block_size}")
    ids_t = torch.tensor(ids_all[:n * body], dtype=torch.long).view(n, body)
    groups_t = torch.tensor(groups_all[:n * body], dtype=torch.long).view(n, body)
    if prefix:
        ids_t = torch.cat([torch.tensor(prefix).expand(n, -1), ids_t], dim=1)
        pre = -10 ** 12 - torch.arange(len(prefix))
        groups_t = torch.cat([pre.expand(n, -1), groups_t], dim=1)
    return ids_t, units_from_groups(groups_t)


class UnitBlockSource:
    """Engine training source over packed token blocks (``len`` + ``get_batch``).

    Args:
        input_ids: (N, L) int64.
        **extra: aligned (N, L) tensors (``units``, ``attention_mask``).

    Examples:
        >>> src = UnitBlockSource(torch.arange(12).view(3, 4), units=torch.zeros(3, 4, dtype=torch.long))
        >>> len(src), sorted(src.get_batch(np.array([2, 0])))
        (3, ['input_ids', 'units'])
    """

    def __init__(self, input_ids: torch.Tensor, **extra: torch.Tensor) -> None:
        self.tensors = {"input_ids": input_ids, **extra}
        for k, v in self.tensors.items():
            if len(v) != len(input_ids):
                raise DataError(f"UnitBlockSource: {k} has {len(v)} rows, input_ids {len(input_ids)}")

    def __len__(self) -> int:
        return len(self.tensors["input_ids"])

    def get_batch(self, indices: np.ndarray) -> dict[str, torch.Tensor]:
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        return {k: v[idx] for k, v in self.tensors.items()}
