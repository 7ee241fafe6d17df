"""MoCo v2: a query encoder, a momentum (EMA) key encoder and a queue of negative keys.

q = normalize(g(f(x1))), k = normalize(g_m(f_m(x2))) (no gradient);
logits = [q.k, q.Queue^T] / tau, loss = CE(logits, 0); then the keys are enqueued (oldest out)
and, after the optimiser step, theta_m <- m theta_m + (1 - m) theta.

Defaults from MoCo v2: tau = 0.2, m = 0.999 (constant; ``momentum_schedule="cosine"`` raises it to
1 as in MoCo v2+/solo-learn), queue 65536, projection MLP (hidden = feature size) -> 128. Keep the
queue well below the dataset size for small data. Single-process training skips MoCo's
shuffle-BN (it needs several devices); the key encoder normalises with its own batch statistics.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fmlab.errors import ConfigError
from fmlab.pretrain import _dist
from fmlab.pretrain._ema import cosine_momentum, frozen_copy, momentum_update_
from fmlab.pretrain.base import Objective, register_objective, require
from fmlab.pretrain.heads import ProjectionHead

__all__ = ["MoCo", "moco_logits"]


def moco_logits(q: Tensor, k: Tensor, queue: Tensor, temperature: float
                ) -> tuple[Tensor, Tensor]:
    """MoCo's InfoNCE logits: the query against its key (column 0) and the K queued keys.

    Args:
        q: (N, D) normalised queries.
        k: (N, D) normalised keys of the same images.
        queue: (K, D) normalised negatives.
        temperature: tau > 0.

    Returns:
        ``(logits, labels)``: (N, 1 + K) logits / tau and the all-zero targets for
        ``F.cross_entropy``.

    Examples:
        >>> import torch
        >>> q = torch.nn.functional.normalize(torch.randn(2, 8), dim=1)
        >>> logits, labels = moco_logits(q, q, torch.zeros(5, 8), 0.2)
        >>> tuple(logits.shape), labels.tolist(), round(float(logits[0, 0]), 4)
        ((2, 6), [0, 0], 5.0)
    """
    l_pos = (q * k).sum(dim=1, keepdim=True)
    l_neg = q @ queue.T
    logits = torch.cat([l_pos, l_neg], dim=1) / temperature
    return logits, torch.zeros(q.shape[0], dtype=torch.long, device=q.device)


@register_objective("moco")
class MoCo(Objective):
    """MoCo v2 on ``batch["views"] = [query_view, key_view]``."""

    def __init__(self, encoder: nn.Module, feature_dim: int | None = None,
                 proj_hidden_dim: int | None = None, proj_dim: int = 128,
                 queue_size: int = 65536, temperature: float = 0.2, momentum: float = 0.999,
                 momentum_schedule: str = "constant", symmetric: bool = False) -> None:
        super().__init__()
        if temperature <= 0:
            raise ConfigError(f"temperature must be > 0, got {temperature}")
        if not 0.0 <= momentum <= 1.0:
            raise ConfigError(f"momentum must be in [0, 1], got {momentum}")
        if momentum_schedule not in ("constant", "cosine"):
            raise ConfigError(f"momentum_schedule must be 'constant' or 'cosine', "
                              f"got {momentum_schedule!r}")
        if queue_size < 1:
            raise ConfigError(f"queue_size must be >= 1, got {queue_size}")
        self._set_encoder(encoder, feature_dim)
        hidden = proj_hidden_dim or self.feature_dim
        # MoCo v2's MLP head has no BN (BN in the head lets the key encoder leak batch statistics)
        self.head = ProjectionHead(self.feature_dim, hidden, proj_dim, 2, batch_norm=False)
        self.key_encoder = frozen_copy(self.encoder)
        self.key_head = frozen_copy(self.head)
        self.temperature, self.base_momentum = float(temperature), float(momentum)
        self.momentum = float(momentum)
        self.momentum_schedule, self.symmetric = momentum_schedule, bool(symmetric)
        g = torch.Generator().manual_seed(0)
        self.register_buffer("queue", F.normalize(torch.randn(queue_size, proj_dim, generator=g),
                                                  dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def keys(self, x: Tensor) -> Tensor:
        return F.normalize(self.key_head(self.key_encoder(x)).float(), dim=1)

    @torch.no_grad()
    def enqueue(self, keys: Tensor) -> None:
        """Write ``keys`` over the oldest entries (wrapping around the ring buffer)."""
        keys = _dist.all_gather_nograd(keys)
        size = self.queue.shape[0]
        if keys.shape[0] > size:
            keys = keys[-size:]
        idx = (self.queue_ptr + torch.arange(keys.shape[0], device=keys.device)) % size
        self.queue[idx] = keys.to(self.queue.dtype)
        self.queue_ptr.copy_((self.queue_ptr + keys.shape[0]) % size)

    def _one_way(self, xq: Tensor, xk: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        q = F.normalize(self.head(self.encoder(xq)).float(), dim=1)
        k = self.keys(xk)
        logits, labels = moco_logits(q, k, self.queue.clone().detach(), self.temperature)
        return F.cross_entropy(logits, labels), (logits.argmax(1) == 0).float().mean(), k

    def forward(self, batch: Mapping[str, Any]) -> tuple[Tensor, dict[str, Any]]:
        views = require(batch, "views", type(self).__name__)
        if len(views) != 2:
            raise ConfigError(f"MoCo needs exactly two views, got {len(views)}")
        loss, acc, k2 = self._one_way(views[0], views[1])
        new_keys = [k2]
        if self.symmetric:
            loss2, acc2, k1 = self._one_way(views[1], views[0])
            loss, acc = (loss + loss2) / 2, (acc + acc2) / 2
            new_keys.append(k1)
        if self.training:
            for k in new_keys:
                self.enqueue(k)
        return loss, {"loss": loss.detach(), "pos_top1": acc,
                      "momentum": self.momentum}

    def on_after_optimizer_step(self, step: int, max_steps: int) -> None:
        if self.momentum_schedule == "cosine":
            self.momentum = cosine_momentum(step, max_steps, self.base_momentum)
        momentum_update_(self.key_encoder, self.encoder, self.momentum)
        momentum_update_(self.key_head, self.head, self.momentum)

    @classmethod
    def default_transform(cls, image_size: int = 32, scale: tuple[float, float] = (0.08, 1.0),
                          jitter: float = 0.5, blur_p: float = 0.0,
                          mean: Sequence[float] | None = None,
                          std: Sequence[float] | None = None, channels: int | None = None):
        """MoCo v2 views: the SimCLR recipe (blur off at 32 px)."""
        from fmlab.data import augment as A

        view = A.simclr_view(image_size, scale=scale, jitter=jitter, blur_p=blur_p,
                             mean=mean or A.IMAGENET_MEAN, std=std or A.IMAGENET_STD)
        return A.BatchTransform({"views": [view, view]}, channels=channels)
