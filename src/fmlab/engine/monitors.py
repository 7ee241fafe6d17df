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


# ----------------------------------------------------------------------------- best-state selection


def trainable_snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Copies of what training can change: the trainable parameters and every buffer.

    Why not the whole ``state_dict``: frozen weights cannot change, and copying a frozen backbone
    at every validation would cost more memory than a PEFT run itself.

    Args:
        model: the model being trained.

    Returns:
        ``state_dict`` key -> detached copy, for :func:`restore_snapshot`.

    Examples:
        >>> import torch
        >>> m = torch.nn.BatchNorm1d(2)
        >>> m.weight.requires_grad_(False) is not None
        True
        >>> sorted(trainable_snapshot(m))
        ['bias', 'num_batches_tracked', 'running_mean', 'running_var']
    """
    return {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()
            if not isinstance(v, torch.nn.Parameter) or v.requires_grad}


def restore_snapshot(model: torch.nn.Module, snap: dict[str, torch.Tensor]) -> None:
    """Copy a :func:`trainable_snapshot` back into ``model`` in place.

    Args:
        model: the model the snapshot was taken from.
        snap: the snapshot.

    Examples:
        >>> import torch
        >>> m = torch.nn.Linear(2, 1)
        >>> snap = trainable_snapshot(m)
        >>> with torch.no_grad():
        ...     _ = m.weight.zero_()
        >>> restore_snapshot(m, snap)
        >>> bool((m.weight == snap["weight"]).all())
        True
    """
    current = model.state_dict(keep_vars=True)
    with torch.no_grad():
        for k, v in snap.items():
            current[k].copy_(v)


class ValidationMonitor:
    """Engine monitor: scores labelled validation images and keeps a copy of the best state.

    The best state has the highest accuracy, ties broken by lower cross-entropy; the first call
    (e.g. the starting state, ``where="start"``) counts as a candidate too.

    Args:
        model: the classifier being trained (``model(images)`` gives logits).
        images: validation images (as ``model`` takes them, e.g. uint8).
        labels: their integer labels.
        every_epochs: the engine calls the monitor after every this many epochs (and at the end).
        batch_size: images per forward pass.

    Attributes:
        best: ``(accuracy, loss)`` of the best state so far (None before the first call).
        best_step: the engine step at which it was seen.
        best_state: its :func:`trainable_snapshot`.
        trainer: set by the caller to the engine ``Trainer``, to read the step from.

    Examples:
        >>> import torch
        >>> model = torch.nn.Linear(2, 2)
        >>> mon = ValidationMonitor(model, torch.eye(2), torch.tensor([0, 1]), 1, 8)
        >>> sorted(mon(None, "cpu", "start")), mon.best_step, mon.best_state is not None
        (['val_accuracy', 'val_loss'], 0, True)
    """

    def __init__(self, model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
                 every_epochs: int, batch_size: int) -> None:
        self.model, self.images, self.labels = model, images, labels
        self.every_epochs, self.batch_size = every_epochs, batch_size
        self.trainer: Any = None
        self.best: tuple[float, float] | None = None
        self.best_step = 0
        self.best_state: dict[str, torch.Tensor] | None = None

    def __call__(self, embed: Any, device: Any, where: str) -> dict[str, float]:
        """Score the validation images; remember the state if it is the best so far.

        Args:
            embed: the engine's embedding function (unused: the monitor calls the model).
            device: the training device (unused: the model is already there).
            where: where in the run the call happens (for messages).

        Returns:
            ``{"val_accuracy": ..., "val_loss": ...}`` to log.
        """
        from fmlab.evaluate import predict_logits

        logits = predict_logits(self.model, self.images, self.batch_size)
        acc = float((logits.argmax(1) == self.labels).float().mean())
        loss = float(F.cross_entropy(logits, self.labels))
        if self.best is None or acc > self.best[0] or (acc == self.best[0] and loss < self.best[1]):
            self.best = (acc, loss)
            self.best_step = int(self.trainer.step) if self.trainer is not None else 0
            self.best_state = trainable_snapshot(self.model)
        return {"val_accuracy": acc, "val_loss": loss}
