"""Retrieval mAP: pure functions of scores (or embeddings) and relevance.

:func:`mean_average_precision` is the general form (any relevance matrix; PLIP's identity and
colour queries use it); :func:`class_retrieval_map` is class-level image retrieval, where a
database item is relevant to a query when their class labels agree (Dark Side augmentation's
small-scale stand-in for landmark retrieval).
"""

from __future__ import annotations

import torch

from fmlab.errors import DataError

__all__ = ["class_retrieval_map", "mean_average_precision"]


def mean_average_precision(scores: torch.Tensor, relevant: torch.Tensor) -> float:
    """Mean over queries (rows) of average precision; queries with no relevant item are skipped.

    AP of a query = mean over its relevant items of the precision at that item's rank (all items
    ranked, ties broken by ``argsort``'s order).

    Args:
        scores: ``(Q, N)`` query-to-item scores (higher first).
        relevant: ``(Q, N)`` bool.

    Returns:
        mAP in [0, 1] (nan when no query has a relevant item).

    Examples:
        >>> mean_average_precision(torch.tensor([[0.9, 0.1, 0.5]]), torch.tensor([[True, False, True]]))
        1.0
        >>> mean_average_precision(torch.tensor([[0.1, 0.9]]), torch.tensor([[True, False]]))
        0.5
    """
    if scores.shape != relevant.shape:
        raise DataError(f"scores {tuple(scores.shape)} and relevant {tuple(relevant.shape)} differ")
    keep = relevant.any(1)
    if not bool(keep.any()):
        return float("nan")
    order = scores[keep].argsort(dim=1, descending=True)
    rel = relevant[keep].gather(1, order).float()
    hits = rel.cumsum(1)
    ranks = torch.arange(1, rel.shape[1] + 1, dtype=torch.float32)
    ap = (rel * hits / ranks).sum(1) / rel.sum(1)
    return float(ap.mean())


def class_retrieval_map(queries: torch.Tensor, query_labels: torch.Tensor,
                        database: torch.Tensor, database_labels: torch.Tensor,
                        chunk: int = 1024) -> float:
    """Class-level retrieval mAP of embeddings ranked by dot product (cosine for unit vectors).

    Args:
        queries: ``(Q, D)`` query embeddings.
        query_labels: ``(Q,)`` integer classes.
        database: ``(N, D)`` database embeddings (queries are not part of it).
        database_labels: ``(N,)`` integer classes.
        chunk: queries scored at a time (bounds memory to ``chunk × N``).

    Returns:
        mAP in [0, 1], weighting every query with a relevant item equally.

    Examples (query 0 finds its one relevant item at rank 2: AP 1/2; query 1 at ranks 1 and 3:
    AP (1 + 2/3)/2):

        >>> q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> db = torch.tensor([[0.9, 0.1], [0.1, 0.9], [0.8, 0.2]])
        >>> round(class_retrieval_map(q, torch.tensor([0, 1]), db, torch.tensor([1, 1, 0])), 4)
        0.6667
    """
    if queries.ndim != 2 or database.ndim != 2 or queries.shape[1] != database.shape[1]:
        raise DataError(f"queries {tuple(queries.shape)} and database {tuple(database.shape)} "
                        "must be (Q, D) and (N, D)")
    if len(query_labels) != len(queries) or len(database_labels) != len(database):
        raise DataError("one label per query and per database item is needed")
    total, counted = 0.0, 0
    for start in range(0, len(queries), chunk):
        q = queries[start:start + chunk].float()
        rel = query_labels[start:start + chunk].view(-1, 1) == database_labels.view(1, -1)
        n = int(rel.any(1).sum())
        if n:
            total += mean_average_precision(q @ database.float().T, rel) * n
            counted += n
    return total / counted if counted else float("nan")
