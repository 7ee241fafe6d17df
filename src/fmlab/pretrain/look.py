"""LOOK: supervised pre-training with a leave-one-out kNN loss (Feng et al., ICLR 2022).

Instead of pulling every image of a class toward one prototype (softmax CE), each image only has
to agree with most of its k nearest neighbours, so a class may stay multi-modal:

    p_i = sum_{j in N_k(i), y_j = y_i} exp(z_i.z_j / tau) / sum_{j in N_k(i)} exp(z_i.z_j / tau)
    L   = -mean_i log p_i

z are L2-normalised embeddings; N_k(i) are the k most similar entries of a memory bank over the
whole dataset, excluding sample i itself (leave-one-out) and slots not yet filled. The bank holds
momentum-updated embeddings (bank <- normalise(m bank + (1 - m) z), m = ``bank_momentum``) and
labels, indexed by the dataset index the batch carries in ``batch["index"]``. Gradients flow
through z_i only; the bank is a constant. Anchors with no same-label neighbour have p_i = 0 and
no useful gradient: they are left out of the mean and counted in ``logs["no_pos_frac"]``.

Small-scale defaults: k = 50, tau = 0.1, projection MLP to 128-d, bank momentum 0.5.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fmlab.errors import ConfigError, DataError
from fmlab.pretrain import _dist
from fmlab.pretrain.base import Objective, register_objective, require
from fmlab.pretrain.heads import ProjectionHead

__all__ = ["LOOK", "look_loss"]


def look_loss(z: Tensor, labels: Tensor, index: Tensor, bank: Tensor, bank_labels: Tensor,
              k: int, temperature: float) -> tuple[Tensor, dict[str, Tensor]]:
    """Leave-one-out kNN loss of normalised ``z`` (N, D) against ``bank`` (M, D).

    Args:
        z: (N, D) normalised embeddings of the batch.
        labels: (N,) their labels.
        index: (N,) their rows in the bank (left out of their own neighbours).
        bank: (M, D) memory bank of the whole training set.
        bank_labels: (M,) labels of the bank rows; < 0 marks empty slots.
        k: neighbours per sample.
        temperature: tau > 0.

    Returns:
        ``(loss, logs)``: -log of the same-label share of the softmax over the k neighbours,
        averaged over samples with a same-label neighbour; logs ``knn_acc``, ``no_pos_frac``.

    Examples:
        >>> import torch
        >>> bank = torch.tensor([[1., 0.], [1., 0.], [0., 1.], [0., 1.]])
        >>> labels = torch.tensor([0, 0, 1, 1])
        >>> loss, logs = look_loss(bank, labels, torch.arange(4), bank, labels, k=3,
        ...                        temperature=0.1)
        >>> round(float(loss), 3), float(logs["knn_acc"])
        (0.0, 1.0)
    """
    with torch.no_grad():  # neighbour search: the selection is not differentiated
        sim = z.detach() @ bank.T  # (N, M)
        invalid = (bank_labels < 0).unsqueeze(0).expand_as(sim).clone()
        invalid[torch.arange(z.shape[0], device=z.device), index] = True  # leave one out
        top_val, top_idx = sim.masked_fill(invalid, float("-inf")).topk(min(k, bank.shape[0]),
                                                                         dim=1)
        valid = torch.isfinite(top_val)
        neighbours = bank[top_idx]  # (N, k, D): a copy, so later bank updates cannot leak in
    logits = torch.einsum("nd,nkd->nk", z, neighbours.to(z.dtype)) / temperature
    same = (bank_labels[top_idx] == labels.unsqueeze(1)) & valid
    log_num = torch.logsumexp(logits.masked_fill(~same, float("-inf")), dim=1)
    log_den = torch.logsumexp(logits.masked_fill(~valid, float("-inf")), dim=1)
    has_pos = same.any(dim=1)
    if bool(has_pos.any()):
        loss = -(log_num - log_den)[has_pos].mean()
    else:
        loss = z.sum() * 0.0
    with torch.no_grad():
        # kNN vote (weights exp(s/tau)) as the running "accuracy"
        w = logits.detach().masked_fill(~valid, float("-inf")).softmax(dim=1).nan_to_num(0.0)
        n_cls = int(max(int(labels.max()), int(bank_labels.max())) + 1)
        votes = torch.zeros(z.shape[0], n_cls, device=z.device, dtype=w.dtype)
        votes.scatter_add_(1, bank_labels[top_idx].clamp(min=0), w)
        acc = (votes.argmax(1) == labels).float().mean()
    return loss, {"knn_acc": acc, "no_pos_frac": 1.0 - has_pos.float().mean()}


@register_objective("look")
class LOOK(Objective):
    """LOOK on ``batch["images"]``, ``batch["labels"]`` and ``batch["index"]``."""

    needs = ("labels", "num_samples")  # the run's labels and training-set size (memory bank)

    def __init__(self, encoder: nn.Module, num_samples: int, feature_dim: int | None = None,
                 k: int = 50, temperature: float = 0.1, proj_dim: int | None = 128,
                 proj_hidden_dim: int = 512, bank_momentum: float = 0.5) -> None:
        super().__init__()
        if num_samples < 2:
            raise ConfigError(f"num_samples (dataset size) must be >= 2, got {num_samples}")
        if k < 1:
            raise ConfigError(f"k must be >= 1, got {k}")
        if temperature <= 0:
            raise ConfigError(f"temperature must be > 0, got {temperature}")
        if not 0.0 <= bank_momentum < 1.0:
            raise ConfigError(f"bank_momentum must be in [0, 1), got {bank_momentum}")
        self._set_encoder(encoder, feature_dim)
        if proj_dim is None:
            self.head: nn.Module = nn.Identity()
            dim = self.feature_dim
        else:
            self.head = ProjectionHead(self.feature_dim, proj_hidden_dim, proj_dim, 2)
            dim = proj_dim
        self.k, self.temperature, self.bank_momentum = int(k), float(temperature), bank_momentum
        self.register_buffer("bank", torch.zeros(num_samples, dim))
        self.register_buffer("bank_labels", torch.full((num_samples,), -1, dtype=torch.long))

    @torch.no_grad()
    def update_bank(self, z: Tensor, labels: Tensor, index: Tensor) -> None:
        z, labels, index = (_dist.all_gather_nograd(t) for t in (z, labels, index))
        seen = (self.bank_labels[index] >= 0).unsqueeze(1)
        old = self.bank[index]
        mixed = torch.where(seen, self.bank_momentum * old + (1 - self.bank_momentum) * z, z)
        self.bank[index] = F.normalize(mixed, dim=1).to(self.bank.dtype)
        self.bank_labels[index] = labels

    def forward(self, batch: Mapping[str, Any]) -> tuple[Tensor, dict[str, Any]]:
        who = type(self).__name__
        images = require(batch, "images", who)
        labels = require(batch, "labels", who).long()
        index = require(batch, "index", who).long()
        if int(index.min()) < 0 or int(index.max()) >= self.bank.shape[0]:
            raise DataError(f"batch['index'] must lie in [0, {self.bank.shape[0]}) (num_samples),"
                            f" got range [{int(index.min())}, {int(index.max())}]")
        if int(labels.min()) < 0:
            raise DataError("LOOK needs labels >= 0")
        z = F.normalize(self.head(self.encoder(images)).float(), dim=1)
        loss, logs = look_loss(z, labels, index, self.bank, self.bank_labels, self.k,
                               self.temperature)
        if self.training:
            self.update_bank(z.detach(), labels, index)
        logs["loss"] = loss.detach()
        return loss, logs

    @classmethod
    def default_transform(cls, image_size: int = 32, padding: int | None = 4,
                          mean: Sequence[float] | None = None,
                          std: Sequence[float] | None = None, channels: int | None = None):
        """Supervised augmentation: pad-4 crop + flip (RRC + flip when ``padding=None``)."""
        from fmlab.data.augment import supervised_transform

        return supervised_transform(image_size, padding, mean, std, channels)
