"""Tuple mining for metric learning on a batch pool: diverse anchors, positives, hard negatives.

The pool is one batch of images with unit descriptors ``emb (N, D)``, class ``labels (N,)``,
``sources (N,)`` (which original image an item is a variant of: a day image and its night version
share a source) and ``domains (N,)`` (0 day, 1 night).

* :func:`diverse_anchors` — Dark Side augmentation's diverse anchor mining (DAM): anchors are
  picked greedily so that each new one is dissimilar to those already picked. After a random
  first anchor, every candidate is scored by its largest cosine similarity to the picked
  anchors; the most similar ``exclude`` fraction is ruled out and the next anchor is drawn
  uniformly from the rest (the original draws from a similarity band of a query pool; with
  ``exclude = 0`` this is random anchor choice). Anchors therefore cover the pool's modes —
  day and night variants, all classes — instead of repeating the easy majority.
* :func:`pick_positives` — for each anchor, with probability ``pair_prob`` its own variant from
  the other domain (a day image and its translated night version form a positive pair), else a
  random item of the same class from another source.
* :func:`hard_negatives` — the ``k`` items of other classes most similar to each anchor.

All random draws take a ``torch.Generator``.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["diverse_anchors", "hard_negatives", "pick_positives"]


def diverse_anchors(emb: Tensor, n: int, generator: torch.Generator,
                    exclude: float = 0.8, candidates: Tensor | None = None) -> Tensor:
    """Indices of ``n`` diverse anchors among ``candidates`` (default: all rows of ``emb``).

    Args:
        emb: ``(N, D)`` unit descriptors (no gradient needed).
        n: anchors wanted (at most the number of candidates).
        generator: draws the first anchor and each choice within the allowed set.
        exclude: fraction of remaining candidates, most similar to the picked anchors, that may
            not be chosen next (0: uniform random choice; close to 1: farthest-point sampling).
        candidates: bool ``(N,)`` mask of allowed anchors.

    Returns:
        ``(n,)`` int64 distinct indices, in the order picked.
    """
    if not 0.0 <= exclude < 1.0:
        raise ValueError(f"diverse_anchors: exclude must be in [0, 1), got {exclude}")
    pool = torch.arange(len(emb)) if candidates is None else candidates.nonzero().view(-1).cpu()
    if n > len(pool):
        raise ValueError(f"diverse_anchors: {n} anchors from {len(pool)} candidates")
    e = emb[pool].float()
    first = int(torch.randint(len(pool), (1,), generator=generator))
    picked = [first]
    most_similar = e @ e[first]
    for _ in range(n - 1):
        score = most_similar.clone()
        score[picked] = float("inf")
        order = score.argsort()                      # least similar first, picked ones last
        free = len(pool) - len(picked)
        allowed = max(1, int(round(free * (1.0 - exclude))))
        nxt = int(order[int(torch.randint(allowed, (1,), generator=generator))])
        picked.append(nxt)
        most_similar = torch.maximum(most_similar, e @ e[nxt])
    return pool[torch.tensor(picked)]


def pick_positives(anchors: Tensor, labels: Tensor, sources: Tensor, domains: Tensor,
                   generator: torch.Generator, pair_prob: float = 0.5) -> Tensor:
    """One positive per anchor: its other-domain variant (prob ``pair_prob``, when it exists)
    or a random same-class item of another source (when none exists: the variant, else itself).

    Returns:
        ``(A,)`` int64 pool indices.
    """
    n = len(labels)
    same_class = (labels[anchors].view(-1, 1) == labels.view(1, -1)) & (
        sources[anchors].view(-1, 1) != sources.view(1, -1))
    variant = (sources[anchors].view(-1, 1) == sources.view(1, -1)) & (
        domains[anchors].view(-1, 1) != domains.view(1, -1))
    noise = torch.rand((len(anchors), n), generator=generator)
    coin = torch.rand(len(anchors), generator=generator) < pair_prob
    by_class = torch.where(same_class, noise, -1.0).argmax(1)
    by_variant = torch.where(variant, noise, -1.0).argmax(1)
    has_class, has_variant = same_class.any(1), variant.any(1)
    use_variant = has_variant & (coin | ~has_class)
    out = torch.where(use_variant, by_variant, by_class)
    return torch.where(has_class | has_variant, out, anchors)


def hard_negatives(emb: Tensor, anchors: Tensor, labels: Tensor, k: int) -> Tensor:
    """``(A, k)`` pool indices of the ``k`` other-class items most similar to each anchor.

    Raises:
        ValueError: fewer than ``k`` items of other classes for some anchor.
    """
    sim = emb[anchors].float() @ emb.float().T
    other = labels[anchors].view(-1, 1) != labels.view(1, -1)
    if int(other.sum(1).min()) < k:
        raise ValueError(f"hard_negatives: an anchor has fewer than {k} other-class items")
    return torch.where(other, sim, float("-inf")).topk(k, dim=1).indices
