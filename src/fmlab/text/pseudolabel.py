"""Pseudo-label pre-training (papers.md #18, "Predictions for pre-training language models"):
a teacher fine-tuned on the small labelled set predicts an unlabelled in-domain pool; the student
(from the base model) is trained on those predictions — task-specific pre-training — and then
fine-tuned on the labelled set like any other backbone.

This file holds the method's pieces; the study (:mod:`fmlab.studies.pseudolabel`) wires them:

- :func:`pseudo_targets`: the teacher's class probabilities turned into the student's targets —
  ``hard`` (one-hot of the argmax, the paper's choice) or ``soft`` (the probabilities);
- :class:`SoftTargetClassification`: the engine objective, cross-entropy against a target
  *distribution*, ``-Σ_c q_c log softmax(z)_c`` (equal to ordinary cross-entropy for one-hot
  targets);
- :class:`PseudoLabelSource`: encoded texts with their targets, dynamic padding;
- :func:`budget_order`: which examples (a seeded order, repeated if needed) fill a token budget
  with full batches, so the arm trains on exactly the tokens it reports.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fmlab.errors import ConfigError

__all__ = ["PseudoLabelSource", "SoftTargetClassification", "budget_order", "pseudo_targets"]


def pseudo_targets(probs: Tensor, kind: str = "hard") -> Tensor:
    """Student targets from teacher probabilities ``(N, C)``.

    Examples:
        >>> p = torch.tensor([[0.7, 0.3], [0.2, 0.8]])
        >>> pseudo_targets(p, "hard").tolist(), pseudo_targets(p, "soft").tolist() == p.tolist()
        ([[1.0, 0.0], [0.0, 1.0]], True)
    """
    if kind == "hard":
        return F.one_hot(probs.argmax(1), probs.shape[1]).to(torch.float32)
    if kind == "soft":
        return probs.to(torch.float32)
    raise ConfigError(f"pseudo.targets: {kind!r} must be hard or soft")


class SoftTargetClassification(nn.Module):
    """Engine objective: ``mean_i -Σ_c targets_ic · log softmax(model(x_i))_c``.

    Examples:
        >>> class Toy(nn.Module):
        ...     def forward(self, ids, mask=None):
        ...         return ids.float()[:, :2]
        >>> b = {"input_ids": torch.tensor([[3, 1]]), "attention_mask": torch.ones(1, 2),
        ...      "targets": torch.tensor([[0.0, 1.0]])}
        >>> loss, _ = SoftTargetClassification(Toy())(b)
        >>> round(float(loss), 4) == round(float(F.cross_entropy(torch.tensor([[3.0, 1.0]]),
        ...                                                     torch.tensor([1]))), 4)
        True
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, Any]]:
        logits = self.model(batch["input_ids"], batch.get("attention_mask")).float()
        q = batch["targets"]
        loss = -(q * F.log_softmax(logits, 1)).sum(1).mean()
        agree = (logits.argmax(1) == q.argmax(1)).float().mean().detach()
        return loss, {"teacher_agreement": agree}


class PseudoLabelSource:
    """Engine source: encoded examples (``input_ids``) with target rows, padded per batch."""

    def __init__(self, examples: Sequence[dict[str, Any]], targets: Tensor, pad_id: int) -> None:
        if len(examples) != len(targets):
            raise ConfigError(f"PseudoLabelSource: {len(examples)} examples, {len(targets)} targets")
        self.examples, self.targets, self.pad_id = list(examples), targets, int(pad_id)
        self.labels = None

    def __len__(self) -> int:
        return len(self.examples)

    def get_batch(self, indices: np.ndarray) -> dict[str, Tensor]:
        from fmlab.text.packing import pad_collate

        idx = [int(i) for i in np.asarray(indices).reshape(-1)]
        out = pad_collate([self.examples[i] for i in idx], self.pad_id)
        out["targets"] = self.targets[torch.as_tensor(idx, dtype=torch.int64)]
        return out


def budget_order(lengths: Sequence[int], tokens: int, batch_size: int, seed: int) -> np.ndarray:
    """Example indices, in seeded passes over the pool (a fresh permutation per pass), cut to the
    largest multiple of ``batch_size`` whose tokens sum to at most ``tokens``.

    Examples:
        >>> order = budget_order([10] * 6, tokens=85, batch_size=2, seed=0)
        >>> len(order), sorted(order[:6].tolist()) == list(range(6))
        (8, True)
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    if len(lengths) == 0:
        raise ConfigError("pseudo-label pre-training: the unlabelled pool is empty")
    rng = np.random.default_rng(int(seed))
    passes = int(tokens // max(1, int(lengths.sum()))) + 2
    order = np.concatenate([rng.permutation(len(lengths)) for _ in range(passes)])
    cum = np.cumsum(lengths[order])
    n = int(np.searchsorted(cum, int(tokens), side="right"))
    n -= n % int(batch_size)
    if n < batch_size:
        raise ConfigError(f"budget.tokens: {tokens} is below one batch of {batch_size} pool texts")
    return order[:n]
