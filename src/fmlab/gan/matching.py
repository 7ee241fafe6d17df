"""GAN-CLS's matching-aware discriminator loss (Reed et al. 2016; papers.md #11 and #35).

A text-conditional D scores pairs (image, caption). A plain conditional GAN shows D two kinds of
pair — real image with its caption (→ real) and generated image with its caption (→ fake) — so D
can learn "is this image real?" and ignore the caption. GAN-CLS adds a third kind, a real image
with a *mismatched* caption t̂ (→ fake), so a real-looking image that does not fit its caption is
penalised and the text condition has to be used. With D's logits s (before the sigmoid):

    vanilla:  L_D = softplus(−s(x, t)) + ½[softplus(s(x, t̂)) + softplus(s(G(z, t), t))]
    hinge:    L_D = relu(1 − s(x, t))   + ½[relu(1 + s(x, t̂))   + relu(1 + s(G(z, t), t))]

(the negative of log D(x,t) + ½[log(1 − D(x,t̂)) + log(1 − D(G(z,t),t))] for vanilla); with
``mismatch=False`` the bracket is just the fake term — the no-mismatch baseline. Label flipping
(Text2FaceGAN's trick) swaps the real/fake target of each pair with probability ``flip_p``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fmlab.errors import ConfigError, DataError

__all__ = ["MatchingAwareLoss", "instance_noise", "mismatched_indices"]

_BASES = ("vanilla", "hinge")


def _real_term(s: Tensor, base: str) -> Tensor:
    return F.softplus(-s) if base == "vanilla" else F.relu(1 - s)


def _fake_term(s: Tensor, base: str) -> Tensor:
    return F.softplus(s) if base == "vanilla" else F.relu(1 + s)


class MatchingAwareLoss(nn.Module):
    """D and G losses of a caption-conditional GAN, with or without the mismatched-caption term.

    Args:
        base: ``"vanilla"`` (GAN-CLS, the log form) or ``"hinge"`` (GALIP's).
        mismatch: add the real-image/wrong-caption pair as a fake (GAN-CLS); ``False`` is the
            plain conditional GAN baseline.
        flip_p: probability of swapping each pair's real/fake target in D's loss.

    Examples:
        >>> loss = MatchingAwareLoss("vanilla")
        >>> z = torch.zeros(4)
        >>> round(float(loss.d_loss(z, z, z)), 4)   # log 2 · (1 + ½ + ½)
        1.3863
    """

    def __init__(self, base: str = "vanilla", mismatch: bool = True, flip_p: float = 0.0) -> None:
        super().__init__()
        if base not in _BASES:
            raise ConfigError(f"matching-aware loss base {base!r} is unknown; choose from {_BASES}")
        if not 0.0 <= flip_p <= 1.0:
            raise ConfigError(f"flip_p must lie in [0, 1], got {flip_p}")
        self.base, self.mismatch, self.flip_p = base, mismatch, flip_p

    def _term(self, s: Tensor, real: bool, generator: torch.Generator | None) -> Tensor:
        """Per-pair loss of target ``real``, the target flipped for a ``flip_p`` share of pairs."""
        if self.flip_p == 0.0:
            return _real_term(s, self.base) if real else _fake_term(s, self.base)
        flip = torch.rand(s.shape, generator=generator).to(s.device) < self.flip_p
        keep, swap = (_real_term, _fake_term) if real else (_fake_term, _real_term)
        return torch.where(flip, swap(s, self.base), keep(s, self.base))

    def d_loss(self, real_right: Tensor, real_wrong: Tensor | None, fake_right: Tensor,
               generator: torch.Generator | None = None) -> Tensor:
        """D's loss from the logits of (x, t), (x, t̂) and (G(z, t), t), each (B,).

        ``real_wrong`` is ignored (and may be ``None``) when ``mismatch`` is off.
        """
        loss = self._term(real_right, True, generator).mean()
        fake = self._term(fake_right, False, generator).mean()
        if not self.mismatch:
            return loss + fake
        if real_wrong is None:
            raise DataError("MatchingAwareLoss(mismatch=True) needs the mismatched-caption logits")
        return loss + 0.5 * (self._term(real_wrong, False, generator).mean() + fake)

    def g_loss(self, fake_right: Tensor) -> Tensor:
        """G's loss on (G(z, t), t): non-saturating softplus(−s) (vanilla) or −s (hinge)."""
        return F.softplus(-fake_right).mean() if self.base == "vanilla" else -fake_right.mean()


def mismatched_indices(labels: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """For each sample, the index of another sample whose caption can serve as t̂.

    A caption of the same class may still describe the image, so t̂ is drawn from samples of a
    *different* class where the batch has one; a batch of a single class falls back to another
    sample (a different caption, not necessarily a wrong one).

    Args:
        labels: (B,) class labels (or any ids whose equality means "matches").
        generator: for a seeded draw.

    Returns:
        (B,) long indices j ≠ i, with ``labels[j] != labels[i]`` wherever possible.
    """
    b = labels.shape[0]
    if b < 2:
        raise DataError("mismatched captions need a batch of at least 2 samples")
    scores = torch.rand(b, b, generator=generator)
    same = labels[:, None] == labels[None, :]
    has_other = (~same).any(dim=1)
    allowed = torch.where(has_other[:, None], ~same, ~torch.eye(b, dtype=torch.bool))
    return torch.where(allowed, scores, torch.full_like(scores, -1.0)).argmax(dim=1)


def instance_noise(x: Tensor, sigma: float, generator: torch.Generator | None = None) -> Tensor:
    """D's input plus N(0, σ²) noise (instance noise; anneal σ to 0 over training)."""
    if sigma == 0:
        return x
    return x + sigma * torch.randn(x.shape, generator=generator).to(x.device, x.dtype)
