"""Representation monitors: online kNN accuracy and collapse detection.

Why: a self-supervised loss can fall while the representation is useless (all embeddings equal,
or squeezed into a few directions). Two cheap signals catch this during training:

* **collapse statistics** of L2-normalised embeddings ``z``: the mean per-dimension standard
  deviation (≈ 1/sqrt(D) for a healthy isotropic spread, → 0 when everything maps to one point;
  SimSiam §4) reported as ``std_ratio = std * sqrt(D)`` (≈ 1 for isotropic data; non-negative
  pooled CNN features sit lower: 0.5 for a trained CIFAR ResNet-56, 0.08 at random init, so the
  default alarm is 0.02), and the **effective rank** ``exp(H(p))`` with ``p = σ / Σσ`` the normalised singular values of ``z`` (RankMe; ≈ 1 when
  the embeddings lie on one line, up to D when they fill the space);
* **kNN accuracy**: cosine kNN (k=20, T=0.07, votes ``exp(sim / T)``; Wu et al. 2018) of a
  labelled validation split against a labelled bank.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from fmlab.engine.data import fetch_batch
from fmlab.errors import DataError

EmbedFn = Callable[[torch.Tensor], torch.Tensor]


class CollapseWarning(UserWarning):
    """Embeddings have collapsed (constant or low-rank)."""


@torch.no_grad()
def knn_predict(bank: torch.Tensor, bank_labels: torch.Tensor, queries: torch.Tensor,
                k: int = 20, temperature: float = 0.07, num_classes: int | None = None,
                chunk: int = 1024) -> torch.Tensor:
    """Weighted cosine-kNN class predictions for ``queries`` (N, D) against ``bank`` (M, D).

    Each of the k most similar bank rows votes for its label with weight ``exp(cos / T)``;
    the class with the largest summed vote wins.
    """
    if len(bank) == 0:
        raise DataError("kNN monitor: the labelled bank is empty")
    k = min(k, len(bank))
    c = int(num_classes if num_classes is not None else int(bank_labels.max()) + 1)
    bank_n = F.normalize(bank.float(), dim=1)
    labels = bank_labels.long().to(bank_n.device)
    preds = []
    for start in range(0, len(queries), chunk):
        q = F.normalize(queries[start:start + chunk].float().to(bank_n.device), dim=1)
        sim, idx = (q @ bank_n.T).topk(k, dim=1)
        weights = (sim / temperature).exp()
        votes = torch.zeros(len(q), c, device=q.device, dtype=weights.dtype)
        votes.scatter_add_(1, labels[idx], weights)
        preds.append(votes.argmax(dim=1))
    return torch.cat(preds) if preds else torch.empty(0, dtype=torch.long)


def knn_accuracy(bank: torch.Tensor, bank_labels: torch.Tensor, queries: torch.Tensor,
                 query_labels: torch.Tensor, k: int = 20, temperature: float = 0.07) -> float:
    """Top-1 accuracy of :func:`knn_predict` (a fraction in [0, 1])."""
    c = int(max(int(bank_labels.max()), int(query_labels.max()))) + 1
    pred = knn_predict(bank, bank_labels, queries, k, temperature, num_classes=c)
    return float((pred.cpu() == query_labels.long().cpu()).float().mean())


@torch.no_grad()
def collapse_stats(z: torch.Tensor) -> dict[str, float]:
    """``std``, ``std_ratio`` (std * sqrt(D)) and ``effective_rank`` of embeddings (N, D)."""
    if z.ndim != 2 or len(z) < 2:
        raise DataError(f"collapse monitor needs embeddings of shape (N>=2, D), got "
                        f"{tuple(z.shape)}")
    zn = F.normalize(z.double(), dim=1)
    d = zn.shape[1]
    std = float(zn.std(dim=0).mean())
    s = torch.linalg.svdvals(zn)
    p = s / s.sum().clamp_min(1e-30)
    p = p[p > 0]
    erank = float(torch.exp(-(p * p.log()).sum()))
    return {"std": std, "std_ratio": std * math.sqrt(d), "effective_rank": erank, "dim": float(d)}


def check_collapse(stats: dict[str, float], min_std_ratio: float = 0.02,
                   min_effective_rank: float = 1.5, where: str = "") -> bool:
    """Warn (:class:`CollapseWarning`) and return True when ``stats`` show a collapse."""
    reasons = []
    if stats["std_ratio"] < min_std_ratio:
        reasons.append(f"std*sqrt(D)={stats['std_ratio']:.3g} < {min_std_ratio}")
    if stats["effective_rank"] < min_effective_rank:
        reasons.append(f"effective rank={stats['effective_rank']:.3g} < {min_effective_rank}")
    if reasons:
        warnings.warn(f"representation collapse{' ' + where if where else ''}: "
                      f"{'; '.join(reasons)}", CollapseWarning, stacklevel=2)
        return True
    return False


@torch.no_grad()
def embed_source(embed: EmbedFn, source: Any, indices: np.ndarray, batch_size: int,
                 device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor | None]:
    """Embeddings (and labels, when the source has them) of ``indices`` of ``source``."""
    feats, labels = [], []
    for start in range(0, len(indices), batch_size):
        batch = fetch_batch(source, indices[start:start + batch_size])
        feats.append(embed(batch["images"].to(device)).float().cpu())
        if "labels" in batch:
            labels.append(batch["labels"].cpu())
    if not feats:
        raise DataError("monitor: no samples to embed")
    return torch.cat(feats), (torch.cat(labels) if labels else None)


class EmbeddingMonitor:
    """Collapse statistics on ``val`` and, given a labelled ``bank``, kNN accuracy.

    Call it with an embedding function; it returns the numbers to log (``knn_top1``,
    ``collapse_std_ratio``, ``collapse_effective_rank``) and warns on collapse. Samples are the
    first ``max_*`` rows of a fixed seeded permutation, so every epoch sees the same subset.
    """

    def __init__(self, val: Any, bank: Any | None = None, k: int = 20,
                 temperature: float = 0.07, max_val: int = 2000, max_bank: int = 10000,
                 batch_size: int = 256, min_std_ratio: float = 0.02,
                 min_effective_rank: float = 1.5, every_epochs: int = 1, seed: int = 0) -> None:
        self.val, self.bank = val, bank
        self.k, self.temperature = k, temperature
        self.batch_size = batch_size
        self.min_std_ratio, self.min_effective_rank = min_std_ratio, min_effective_rank
        self.every_epochs = every_epochs
        rng = np.random.default_rng(seed)
        self.val_idx = np.sort(rng.permutation(len(val))[:max_val])
        self.bank_idx = (np.sort(rng.permutation(len(bank))[:max_bank])
                         if bank is not None else None)

    @classmethod
    def from_config(cls, cfg: Any, val: Any, bank: Any | None = None,
                    seed: int = 0) -> EmbeddingMonitor:
        """Build from a :class:`fmlab.engine.config.MonitorConfig`."""
        return cls(val, bank, k=cfg.knn_k, temperature=cfg.knn_temperature,
                   max_val=cfg.max_val, max_bank=cfg.max_train, batch_size=cfg.batch_size,
                   min_std_ratio=cfg.min_std_ratio, min_effective_rank=cfg.min_effective_rank,
                   every_epochs=cfg.every_epochs, seed=seed)

    def __call__(self, embed: EmbedFn, device: torch.device | str = "cpu",
                 where: str = "") -> dict[str, float]:
        z, y = embed_source(embed, self.val, self.val_idx, self.batch_size, device)
        stats = collapse_stats(z)
        out = {"collapse_std_ratio": stats["std_ratio"],
               "collapse_effective_rank": stats["effective_rank"]}
        check_collapse(stats, self.min_std_ratio, self.min_effective_rank, where)
        if self.bank is not None and y is not None:
            zb, yb = embed_source(embed, self.bank, self.bank_idx, self.batch_size, device)
            if yb is None:
                raise DataError("kNN monitor: the bank source has no labels")
            out["knn_top1"] = knn_accuracy(zb, yb, z, y, self.k, self.temperature)
        return out
