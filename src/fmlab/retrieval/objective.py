"""Dark Side augmentation's metric-learning objective: ``loss, logs = objective(batch)``.

A batch holds uint8 day ``images`` ``(B, H, W, C)`` with class ``labels`` and, in the augmented
arms, ``night`` — a night version of each day image (translated by a day→night generator, or the
true degradation for the oracle arm). The pool of the step is the day images plus, when present,
their night versions; every pool item gets the photometric jitter (the baseline's augmentation).
Then, without gradients and with the network in eval mode (as cirtorch mines), the pool is
embedded; ``anchors`` anchors are chosen by diverse anchor mining (or at random), each gets a
positive (its other-domain variant with probability ``pair_prob``, else a same-class image) and
``negatives`` hard negatives (most similar other-class pool items). Only the images of those
tuples are embedded again with gradients, and the metric loss (contrastive or triplet) is taken
over the tuples.

Randomness comes from a generator seeded off the global RNG, which the engine re-seeds from
(seed, step): runs are repeatable and resumable.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn
from torch import Tensor

from fmlab.retrieval.gem import RetrievalNet
from fmlab.retrieval.mining import diverse_anchors, hard_negatives, pick_positives

__all__ = ["DarkSideObjective"]

Jitter = Callable[[Tensor, torch.Generator], Tensor]


def _float_nchw(images: Tensor) -> Tensor:
    return images.permute(0, 3, 1, 2).float() / 255.0


class DarkSideObjective(nn.Module):
    """Tuple mining on the batch pool + a metric loss (see the module docstring).

    Args:
        net: the retrieval network (exported as the run's encoder).
        loss: a metric loss ``(anchor, positive, negatives) -> scalar``.
        jitter: photometric augmentation applied to every pool item (None: none).
        anchors: tuples per step.
        negatives: hard negatives per tuple.
        pair_prob: probability that an anchor's positive is its other-domain variant.
        diverse: diverse anchor mining (False: uniform random anchors).
        exclude: DAM's excluded most-similar fraction.
    """

    def __init__(self, net: RetrievalNet, loss: nn.Module, jitter: Jitter | None = None,
                 anchors: int = 16, negatives: int = 4, pair_prob: float = 0.5,
                 diverse: bool = True, exclude: float = 0.8) -> None:
        super().__init__()
        self.encoder = net
        self.loss = loss
        self.jitter = jitter
        self.anchors, self.negatives = int(anchors), int(negatives)
        self.pair_prob, self.diverse, self.exclude = float(pair_prob), bool(diverse), float(exclude)

    def embed(self, images: Tensor) -> Tensor:
        return self.encoder.embed(images)

    def _pool(self, batch: dict[str, Tensor], gen: torch.Generator
              ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        day = batch["images"]
        labels = batch["labels"].view(-1)
        b = len(day)
        parts, doms = [day], [torch.zeros(b, dtype=torch.int64)]
        if "night" in batch:
            parts.append(batch["night"])
            doms.append(torch.ones(b, dtype=torch.int64))
        k = len(parts)
        x = _float_nchw(torch.cat(parts))
        if self.jitter is not None:
            x = self.jitter(x, gen)
        sources = torch.arange(b).repeat(k)
        return x, labels.repeat(k), sources, torch.cat(doms)

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        gen = torch.Generator().manual_seed(int(torch.randint(2 ** 62, (1,))))
        x, labels, sources, domains = self._pool(batch, gen)
        was = self.encoder.training
        self.encoder.eval()
        with torch.no_grad():
            pool_emb = self.encoder(x)
        self.encoder.train(was)
        labels_cpu = labels.cpu()
        if self.diverse:
            anchors = diverse_anchors(pool_emb.cpu(), self.anchors, gen, self.exclude)
        else:
            anchors = torch.randperm(len(x), generator=gen)[:self.anchors]
        pos = pick_positives(anchors, labels_cpu, sources, domains, gen, self.pair_prob)
        neg = hard_negatives(pool_emb.cpu(), anchors, labels_cpu, self.negatives)
        used, inverse = torch.unique(torch.cat([anchors, pos, neg.view(-1)]), return_inverse=True)
        z = self.encoder(x[used.to(x.device)])[inverse]
        a = len(anchors)
        za, zp, zn = z[:a], z[a:2 * a], z[2 * a:].view(a, self.negatives, -1)
        loss = self.loss(za, zp, zn)
        with torch.no_grad():
            logs = {"pos_sim": float((za * zp).sum(1).mean()),
                    "neg_sim": float((za.unsqueeze(1) * zn).sum(2).mean()),
                    "night_anchors": float(domains[anchors].float().mean()),
                    "gem_p": float(self.encoder.pool.p.detach())}
        return loss, logs
