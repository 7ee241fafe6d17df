"""T5 span corruption: drop random spans (15 % of the tokens, mean span length 3), put one
sentinel per span in the input, and predict ``sentinel_k span_k ...`` in the decoder.

The noise mask follows T5's ``random_spans_noise_mask``: ``n = round(L·density)`` noise tokens in
``round(n / mean_span)`` spans; the noise and the non-noise tokens are each cut into that many
non-empty runs at uniformly random places and interleaved, non-noise first. So every row has
exactly ``n`` noise tokens (the rate is exact, not just expected). Inputs and targets end with
``</s>``. Replacing each sentinel of the input by its target span gives the original back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from fmlab.errors import ConfigError
from fmlab.text.objectives.base import TextObjective, register_text_objective, require_ids

__all__ = ["SpanCorruption", "noise_mask", "pad_pairs", "sentinel_ids", "span_corrupt"]


def _segment(n_items: int, n_segments: int, generator: torch.Generator | None) -> list[int]:
    """Lengths of a uniformly random cut of ``n_items`` into ``n_segments`` non-empty runs."""
    if n_segments <= 1:
        return [n_items]
    cuts = (torch.randperm(n_items - 1, generator=generator)[:n_segments - 1] + 1).sort().values
    bounds = [0, *cuts.tolist(), n_items]
    return [b - a for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def noise_mask(length: int, density: float, mean_span: float,
               generator: torch.Generator | None = None) -> Tensor:
    """Bool (length,): T5's random spans of noise (see the module docstring).

    Args:
        length: tokens in the row.
        density: share of noise tokens (rounded; at least 1, at most ``length - 1``).
        mean_span: mean noise-span length.
        generator: for tests; default the global RNG.

    Returns:
        The noise mask.

    Examples:
        >>> m = noise_mask(20, 0.15, 3.0, torch.Generator().manual_seed(0))
        >>> int(m.sum()), bool(m[0])  # 3 noise tokens; rows start with non-noise
        (3, False)
    """
    if length < 2:
        raise ConfigError(f"span corruption needs rows of at least 2 tokens, got {length}")
    n_noise = min(max(round(length * density), 1), length - 1)
    n_spans = min(max(round(n_noise / mean_span), 1), n_noise, length - n_noise)
    noise = _segment(n_noise, n_spans, generator)
    keep = _segment(length - n_noise, n_spans, generator)
    parts = []
    for k, n in zip(keep, noise, strict=True):
        parts += [torch.zeros(k, dtype=torch.bool), torch.ones(n, dtype=torch.bool)]
    return torch.cat(parts)


def span_corrupt(tokens: Sequence[int] | Tensor, mask: Sequence[bool] | Tensor,
                 sentinels: Sequence[int], eos: int | None = None) -> tuple[list[int], list[int]]:
    """Replace each noise run by the next sentinel; the targets list ``sentinel run ...``.

    Args:
        tokens: the row's ids.
        mask: its noise mask (:func:`noise_mask`).
        sentinels: sentinel ids, ``<extra_id_0>`` first.
        eos: appended to inputs and targets when given.

    Returns:
        ``(inputs, targets)`` id lists.

    Examples:
        >>> span_corrupt([10, 11, 12, 13, 14], [0, 1, 1, 0, 1], sentinels=[99, 98], eos=1)
        ([10, 99, 13, 98, 1], [99, 11, 12, 98, 14, 1])
    """
    toks = tokens.tolist() if isinstance(tokens, Tensor) else list(tokens)
    noise = mask.tolist() if isinstance(mask, Tensor) else list(mask)
    inputs: list[int] = []
    targets: list[int] = []
    k, prev = 0, False
    for t, is_noise in zip(toks, noise, strict=True):
        if is_noise and not prev:
            if k >= len(sentinels):
                raise ConfigError(f"span corruption needs more than the {len(sentinels)} "
                                  f"sentinel tokens of the tokenizer")
            inputs.append(sentinels[k])
            targets.append(sentinels[k])
            k += 1
        (targets if is_noise else inputs).append(t)
        prev = bool(is_noise)
    if eos is not None:
        inputs.append(eos)
        targets.append(eos)
    return inputs, targets


def pad_pairs(pairs: Sequence[tuple[list[int], list[int]]], pad_id: int,
              device: torch.device | None = None) -> dict[str, Tensor]:
    """Encoder-decoder batch from (inputs, targets) lists: right-padded ``input_ids``,
    ``attention_mask`` and ``labels`` (-100 on padding).

    Examples:
        >>> b = pad_pairs([([5, 6], [7]), ([5], [7, 8])], pad_id=0)
        >>> b["input_ids"].tolist(), b["labels"].tolist()
        ([[5, 6], [5, 0]], [[7, -100], [7, 8]])
    """
    li = max(len(a) for a, _ in pairs)
    lt = max(len(b) for _, b in pairs)
    ids = torch.full((len(pairs), li), pad_id, dtype=torch.long)
    am = torch.zeros((len(pairs), li), dtype=torch.long)
    labels = torch.full((len(pairs), lt), -100, dtype=torch.long)
    for r, (a, b) in enumerate(pairs):
        ids[r, :len(a)] = torch.tensor(a)
        am[r, :len(a)] = 1
        labels[r, :len(b)] = torch.tensor(b)
    return {k: v.to(device) for k, v in
            {"input_ids": ids, "attention_mask": am, "labels": labels}.items()}


def sentinel_ids(tokenizer: Any) -> list[int]:
    """``<extra_id_0>``, ``<extra_id_1>`` ... ids of a tokenizer (T5's sentinels).

    Raises:
        ConfigError: the tokenizer has none (train a ``unigram`` or ``bpe`` tokenizer).
    """
    out = []
    while True:
        tid = tokenizer.convert_tokens_to_ids(f"<extra_id_{len(out)}>")
        if tid is None or tid == tokenizer.unk_token_id:
            break
        out.append(int(tid))
    if not out:
        raise ConfigError("tokenizer: has no sentinel tokens <extra_id_0>...; span corruption "
                          "needs a unigram or bpe tokenizer (tokenizer.kind)")
    return out


def seq2seq_logs(logits: Tensor, labels: Tensor, loss: Tensor) -> dict[str, Tensor]:
    sel = labels != -100
    acc = (logits.detach().argmax(-1)[sel] == labels[sel]).float().mean()
    return {"s2s_loss": loss.detach(), "target_acc": acc}


@register_text_objective("t5")
class SpanCorruption(TextObjective):
    """T5 span corruption on a ``T5ForConditionalGeneration``.

    Args:
        tokenizer: the run's tokenizer, with sentinels (filled by the run).
        size: the model size dict (filled by the run).
        noise_density: share of corrupted tokens (T5: 0.15).
        mean_span: mean corrupted-span length (T5: 3).

    Examples:
        >>> from fmlab.text.models import _toy_tokenizer
        >>> tok = _toy_tokenizer(seq2seq=True)
        >>> _ = torch.manual_seed(0)
        >>> obj = SpanCorruption(tok, {"hidden": 16, "layers": 1, "heads": 2})
        >>> loss, logs = obj({"input_ids": torch.randint(20, 60, (2, 16))})
        >>> loss.ndim, sorted(logs)
        (0, ['s2s_loss', 'target_acc'])
    """

    arch = "t5"
    tokenizer_kind = "unigram"

    def __init__(self, tokenizer: Any, size: dict[str, Any] | None = None,
                 noise_density: float = 0.15, mean_span: float = 3.0) -> None:
        super().__init__()
        from fmlab.text.models import build_model

        if not 0.0 < noise_density < 1.0:
            raise ConfigError(f"objective.noise_density: {noise_density!r} must be in (0, 1)")
        if mean_span < 1.0:
            raise ConfigError(f"objective.mean_span: {mean_span!r} must be >= 1")
        self.noise_density, self.mean_span = noise_density, mean_span
        self.sentinels = sentinel_ids(tokenizer)
        self.eos = tokenizer.eos_token_id
        self.pad = int(tokenizer.pad_token_id)
        self.model = build_model(self.arch, size, tokenizer)

    def make_pairs(self, ids: Tensor, am: Tensor,
                   generator: torch.Generator | None = None) -> list[tuple[list[int], list[int]]]:
        """(inputs, targets) of every row (its real tokens only)."""
        pairs = []
        for row, keep in zip(ids.cpu(), am.cpu().bool(), strict=True):
            toks = row[keep]
            mask = noise_mask(len(toks), self.noise_density, self.mean_span, generator)
            pairs.append(span_corrupt(toks, mask, self.sentinels, self.eos))
        return pairs

    def forward(self, batch: Mapping[str, Any]) -> tuple[Tensor, dict[str, Any]]:
        ids, am = require_ids(batch, self.name)
        b = pad_pairs(self.make_pairs(ids, am), self.pad, ids.device)
        out = self.model(**b)
        return out.loss, seq2seq_logs(out.logits, b["labels"], out.loss)
