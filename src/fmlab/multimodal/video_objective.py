"""The training loss of an X-CLIP video model: CLIP's cross-entropy against K class embeddings.

Kept apart from :mod:`fmlab.multimodal.video` (the network) because the loss also owns what the
network does not: the learnable temperature, the class-text source (fixed or learnable) and
several label kinds at once (appearance and motion groups).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fmlab.errors import DataError, ModelError
from fmlab.multimodal.video import XCLIP
from fmlab.utils.validation import finite_float, positive_int

__all__ = ["XCLIPObjective"]


class XCLIPObjective(nn.Module):
    """CLIP-style classification loss of an :class:`XCLIP` model over K class embeddings.

    ``logits[b, k] = scale * cos(v_b, t'_bk)``, cross-entropy against ``batch["labels"]``; the scale
    is ``exp(logit_scale)`` (learnable, CLIP's init 1/0.07), clamped at ``max_logit_scale``.

    Args:
        model: the video model.
        class_embeddings: a fixed ``(K, E)`` tensor (kept as a buffer), or a callable returning one
            on every step (an ``nn.Module`` is registered, so its parameters train with the model).
        init_logit_scale: initial multiplier 1/temperature.
        max_logit_scale: upper clamp of the multiplier.
        groups: several label kinds at once (e.g. appearance and direction): the sizes of
            consecutive class groups of the K embeddings; ``batch["labels"]`` is then ``(B, G)``
            and the loss the mean of the groups' cross-entropies, each over its own classes.

    Examples:
        >>> _ = torch.manual_seed(0)
        >>> obj = XCLIPObjective(XCLIP(frames=2, image_size=8, width=16, depth=1, embed_dim=8), torch.randn(3, 8))
        >>> loss, logs = obj({"images": torch.zeros(4, 2, 8, 8, dtype=torch.uint8), "labels": torch.tensor([0, 1, 2, 0])})
        >>> loss.ndim, sorted(logs)
        (0, ['acc', 'logit_scale'])
    """

    def __init__(self, model: XCLIP, class_embeddings: Tensor | Callable[[], Tensor],
                 init_logit_scale: float = 1 / 0.07, max_logit_scale: float = 100.0,
                 groups: list[int] | tuple[int, ...] | None = None) -> None:
        super().__init__()
        self.groups = None if groups is None else tuple(positive_int("groups", g) for g in groups)
        finite_float("init_logit_scale", init_logit_scale, low=0.0, low_open=True, high=max_logit_scale)
        self.model = model
        self.max_logit_scale = float(max_logit_scale)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(init_logit_scale)))
        self.text_fn: Callable[[], Tensor] | None = None
        if isinstance(class_embeddings, Tensor):
            self.register_buffer("fixed_text", class_embeddings.detach().float().clone())
        elif callable(class_embeddings):
            self.text_fn = class_embeddings
        else:
            raise ModelError(f"class_embeddings: expected a (K, E) tensor or a callable, got {type(class_embeddings)}")

    def class_embeddings(self) -> Tensor:
        """The K class embeddings ``(K, E)`` before prompting.

        Returns:
            The fixed tensor, or the callable's output.
        """
        return self.fixed_text if self.text_fn is None else self.text_fn()

    def logits(self, images: Tensor) -> Tensor:
        """Scaled cosine logits ``(B, K)`` of clips against the classes.

        Args:
            images: uint8 clips ``(B, T, S, S[, 3])``.

        Returns:
            ``scale * cos(v, t')`` per clip and class.
        """
        v, t = self.model(images, self.class_embeddings())
        sims = torch.einsum("be,bke->bk", F.normalize(v, dim=-1), F.normalize(t, dim=-1))
        return self.logit_scale.exp().clamp(max=self.max_logit_scale) * sims

    def forward(self, batch: dict) -> tuple[Tensor, dict]:
        """Loss and logs of one batch (the :mod:`fmlab.engine` objective contract).

        Args:
            batch: ``{"images": uint8 (B, T, S, S[, 3]), "labels": int64 (B,)}``.

        Returns:
            ``(cross-entropy, {"acc": ..., "logit_scale": ...})``.
        """
        logits = self.logits(batch["images"])
        labels = batch["labels"].long()
        if self.groups is None:
            return self._group_loss(logits, labels, "")
        if labels.ndim != 2 or labels.shape[1] != len(self.groups) or sum(self.groups) != logits.shape[1]:
            raise DataError(f"labels: expected ({logits.shape[0]}, {len(self.groups)}) for class groups "
                            f"{self.groups} over {logits.shape[1]} classes, got shape {tuple(labels.shape)}")
        losses, logs = [], {}
        for g, part in enumerate(logits.split(list(self.groups), dim=1)):
            loss, log = self._group_loss(part, labels[:, g], f"_{g}")
            losses.append(loss)
            logs.update(log)
        return torch.stack(losses).mean(), logs

    def _group_loss(self, logits: Tensor, labels: Tensor, suffix: str) -> tuple[Tensor, dict]:
        """Cross-entropy and accuracy of one label kind."""
        k = logits.shape[1]
        if labels.shape != logits.shape[:1] or labels.min() < 0 or labels.max() >= k:
            raise DataError(f"labels: expected ({logits.shape[0]},) classes in [0, {k}), "
                            f"got shape {tuple(labels.shape)} values {labels.min().item()}..{labels.max().item()}")
        loss = F.cross_entropy(logits, labels)
        acc = (logits.argmax(dim=1) == labels).float().mean()
        return loss, {f"acc{suffix}": acc.detach(), "logit_scale": self.logit_scale.exp().detach()}
