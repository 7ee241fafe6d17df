"""Per-latent terms of stage 2: keep the positives where they are, push the negatives out.

The paper's stage 2 only moves θ away from θ_N in parameter space and trains on the positives;
everything the push moves, it moves blindly, which is why a strong γ costs FID on the classes
that should stay. Here the stage-0 split is done on *latents*: draw z, look at G₀(z) with the
training-time guide (:mod:`fmlab.gan.unlearn.guide`), and keep

- ``z_pos``: latents the guide calls another class with probability ≥ ``confidence``, with their
  original samples G₀(z) — the **anchor** (λ_a · mean ‖G(z) − G₀(z)‖²) keeps them, so the
  repulsion only moves what it must;
- ``z_neg``: latents the guide calls the target — the **negative push** −log(1 − p_target(G(z)))
  (the guide's probability) drives exactly those samples out of the class; the adversarial loss
  keeps them digits. ``negative_threshold`` < 1 also pushes latents the guide only suspects. It fades by itself once p_target is small.

Ambiguous latents (neither set) are free. Both terms are zero-cost to switch off (weight 0).

:class:`OnlineLatentTerms` (the default) applies the same two terms to fresh latents every step
(the fixed sets get memorised: the push then stops generalising to new z), and can use the
:func:`target_margin` push, which keeps pushing samples the guide still gives ≥ margin target.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from fmlab.errors import ConfigError, DataError
from fmlab.gan.nets.base import Generator

Penalty = Callable[[nn.Module], tuple[torch.Tensor, dict[str, float]]]


@dataclass
class LatentSets:
    z_pos: torch.Tensor  # (P, z_dim) confidently positive latents
    x_pos: torch.Tensor  # (P, C, H, W) G₀(z_pos), the anchor's targets
    z_neg: torch.Tensor  # (Q, z_dim) latents whose G₀ sample the guide calls the target


@torch.no_grad()
def split_latents(G: Generator, guide: nn.Module, target_class: int, n: int = 5000,
                  seed: int = 0, confidence: float = 0.9, batch_size: int = 500,
                  negative_threshold: float = 1.0) -> LatentSets:
    """Draw ``n`` latents (CPU generator seeded ``seed``) and sort them by the guide's verdict
    on G's samples (G in eval mode, restored after).

    A latent is negative when the guide's argmax is the target or p_target ≥
    ``negative_threshold`` (below 1: also push the doubtful ones, which another classifier may
    call the target); positive (anchored) when not negative and the guide is at least
    ``confidence`` sure of another class.

    Raises:
        ConfigError: a conditional G, or ``confidence`` outside [0, 1].
        DataError: no negative or no positive latent.
    """
    if G.num_classes > 0:
        raise ConfigError("per-latent anchor/negative terms need an unconditional generator")
    if not 0.0 <= confidence <= 1.0:
        raise ConfigError(f"anchor confidence must lie in [0, 1], got {confidence}")
    z = G.sample_z(n, torch.Generator().manual_seed(int(seed)))
    was = G.training
    G.eval()
    try:
        x = torch.cat([G(z[i:i + batch_size]) for i in range(0, n, batch_size)])
    finally:
        G.train(was)
    p = torch.cat([guide(x[i:i + batch_size]).softmax(1) for i in range(0, n, batch_size)])
    pred = p.argmax(1)
    neg = (pred == target_class) | (p[:, target_class] >= negative_threshold)
    pos = (~neg) & ((1 - p[:, target_class]) >= confidence) & (p.max(1).values >= confidence)
    if not neg.any() or not pos.any():
        raise DataError(f"latent split: {int(neg.sum())} negative and {int(pos.sum())} positive "
                        f"latents of {n} for class {target_class}; need at least one of each")
    return LatentSets(z[pos], x[pos], z[neg])


def target_margin(logits: torch.Tensor, target_class: int, margin: float) -> torch.Tensor:
    """max(0, log p_target − log ``margin``) per row: a push that keeps its full strength until
    the guide gives the target less than ``margin`` (−log(1 − p) fades like p, so samples the
    guide calls 10 % target — ambiguous ones another classifier may call the target — are
    barely moved by it).

    Examples:
        >>> v = target_margin(torch.tensor([[0.0, 0.0], [5.0, -5.0]]), 1, 0.01)
        >>> [round(float(x), 3) for x in v]  # p = 1/2: log 50; p ≈ 4.5e-5: 0
        [3.912, 0.0]
    """
    return torch.relu(logits.log_softmax(1)[:, target_class] - math.log(margin))


def not_target_nll(logits: torch.Tensor, target_class: int) -> torch.Tensor:
    """−log(1 − p_target) per row, computed stably as logsumexp(all) − logsumexp(others).

    Examples:
        >>> v = not_target_nll(torch.tensor([[0.0, 0.0]]), 0)  # p = 1/2 → log 2
        >>> round(float(v[0]), 4)
        0.6931
    """
    others = torch.cat([logits[:, :target_class], logits[:, target_class + 1:]], dim=1)
    return torch.logsumexp(logits, 1) - torch.logsumexp(others, 1)


class LatentTerms:
    """``penalty(G) -> (λ_a·anchor + λ_n·push, logs)`` on fresh random batches of the two sets.

    Args:
        sets: the latent split.
        guide: the training-time classifier (frozen; gradients flow through it into G only).
        target_class: the class to remove.
        anchor_weight: λ_a (0 = off).
        negative_weight: λ_n (0 = off).
        batch_size: latents per set and step.
        seed: seed of the batches' own RNG (the global RNG is not touched).
    """

    def __init__(self, sets: LatentSets, guide: nn.Module, target_class: int,
                 anchor_weight: float, negative_weight: float, batch_size: int = 64,
                 seed: int = 0) -> None:
        if anchor_weight < 0 or negative_weight < 0:
            raise ConfigError(f"anchor and negative weights must be >= 0, got {anchor_weight}, "
                              f"{negative_weight}")
        self.sets, self.guide, self.target = sets, guide.requires_grad_(False), int(target_class)
        self.wa, self.wn, self.bs = float(anchor_weight), float(negative_weight), int(batch_size)
        self.rng = torch.Generator().manual_seed(int(seed))

    def _pick(self, n: int) -> torch.Tensor:
        return torch.randint(0, n, (min(self.bs, n),), generator=self.rng)

    def __call__(self, G: nn.Module) -> tuple[torch.Tensor, dict[str, float]]:
        total = torch.zeros((), device=next(G.parameters()).device)
        logs = {}
        if self.wa > 0:
            i = self._pick(len(self.sets.z_pos))
            a = (G(self.sets.z_pos[i]) - self.sets.x_pos[i]).pow(2).mean()
            total = total + self.wa * a
            logs["anchor"] = float(a.detach())
        if self.wn > 0:
            j = self._pick(len(self.sets.z_neg))
            push = not_target_nll(self.guide(G(self.sets.z_neg[j])), self.target).mean()
            total = total + self.wn * push
            logs["neg_push"] = float(push.detach())
        return total, logs


class OnlineLatentTerms:
    """The same two terms on *fresh* latents every step (no fixed set to memorise).

    Each call draws ``batch_size`` z, labels G₀(z) with the guide (no gradient), and returns
    λ_a · mean over confidently positive z of ‖G(z) − G₀(z)‖² (per-pixel mean) plus
    λ_n · mean over all z of −log(1 − p_target(G(z))): wherever G's *current* sample looks like
    the target it is pushed out, including samples that drift into the class during training.
    One forward pass of G serves both terms.

    Args:
        G0: a frozen copy of the pre-trained generator (unconditional).
        guide: the training-time classifier (frozen).
        target_class: the class to remove.
        anchor_weight: λ_a (0 = off).
        negative_weight: λ_n (0 = off).
        confidence: guide probability of another class needed to anchor a latent.
        batch_size: latents per step.
        seed: seed of the latents' own RNG.
        augment: a DiffAugment policy (e.g. ``translation``); when given, the push also scores
            an augmented view of each sample, so a sample must leave the class for the guide
            robustly, not by a perturbation that fools only this one network.
        margin: 0 uses −log(1 − p_target); > 0 uses :func:`target_margin` with this margin and
            anchors only latents whose G₀ sample has p_target below it.
    """

    def __init__(self, G0: Generator, guide: nn.Module, target_class: int,
                 anchor_weight: float, negative_weight: float, confidence: float = 0.9,
                 batch_size: int = 128, seed: int = 0, augment: str = "",
                 margin: float = 0.0) -> None:
        from fmlab.gan.diffaugment import parse_policy

        parse_policy(augment)
        if not 0.0 <= margin < 1.0:
            raise ConfigError(f"push margin must lie in [0, 1), got {margin}")
        self.augment, self.margin = augment, float(margin)
        if anchor_weight < 0 or negative_weight < 0:
            raise ConfigError(f"anchor and negative weights must be >= 0, got {anchor_weight}, "
                              f"{negative_weight}")
        if G0.num_classes > 0:
            raise ConfigError("per-latent anchor/negative terms need an unconditional generator")
        self.G0 = G0.eval().requires_grad_(False)
        self.guide, self.target = guide.requires_grad_(False), int(target_class)
        self.wa, self.wn, self.conf = float(anchor_weight), float(negative_weight), confidence
        self.bs = int(batch_size)
        self.rng = torch.Generator().manual_seed(int(seed))

    def __call__(self, G: nn.Module) -> tuple[torch.Tensor, dict[str, float]]:
        z = self.G0.sample_z(self.bs, self.rng)
        with torch.no_grad():
            x0 = self.G0(z)
            p0 = self.guide(x0).softmax(1)
        pos = (p0.argmax(1) != self.target) & (p0.max(1).values >= self.conf)
        if self.margin > 0:
            pos &= p0[:, self.target] < self.margin
        x = G(z)
        total = torch.zeros((), device=x.device)
        logs = {"anchored": float(pos.float().mean())}
        if self.wa > 0 and pos.any():
            a = (x[pos] - x0[pos]).pow(2).flatten(1).mean(1).mean()
            total = total + self.wa * a
            logs["anchor"] = float(a.detach())
        if self.wn > 0:
            views = x
            if self.augment:
                from fmlab.gan.diffaugment import diff_augment

                views = torch.cat([x, diff_augment(x, self.augment, self.rng)])
            logits = self.guide(views)
            push = (target_margin(logits, self.target, self.margin) if self.margin > 0
                    else not_target_nll(logits, self.target)).mean()
            total = total + self.wn * push
            logs["neg_push"] = float(push.detach())
        return total, logs


def combine(penalties: Sequence[Penalty | None]) -> Penalty | None:
    """One penalty that sums the given ones (None entries skipped) and merges their logs."""
    active = [p for p in penalties if p is not None]
    if not active:
        return None

    def total(G: nn.Module) -> tuple[torch.Tensor, dict[str, float]]:
        out, logs = None, {}
        for p in active:
            t, lg = p(G)
            out = t if out is None else out + t
            logs.update(lg)
        return out, logs

    return total


def check_sets(sets: LatentSets, z_dim: int) -> None:
    """Raise a DataError when the latent sets do not fit a generator with ``z_dim``."""
    for name in ("z_pos", "z_neg"):
        t = getattr(sets, name)
        if t.dim() != 2 or t.shape[1] != z_dim:
            raise DataError(f"latent set {name}: shape {tuple(t.shape)}, generator z_dim {z_dim}")
