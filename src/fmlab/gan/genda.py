"""GenDA (Yang et al., one-shot generative domain adaptation): the pieces that are not a net.

The generator side is :class:`~fmlab.gan.nets.style.GenDAGenerator` (``style_genda``): the
source style generator plus the attribute adaptor w'_l = a_l ⊙ w + b_l. Here:

- :class:`AttributeClassifier` — the discriminator side: a light linear head on the *frozen*
  backbone of the source D (its ``embed``), trained to tell the augmented target from samples;
  its non-saturating score is what guides G. It is a :class:`Discriminator`, so the shared GAN
  step (:mod:`fmlab.gan.step`) trains it like any D.
- :func:`to_genda` builds the adapted generator from a source ``style`` generator: same weights,
  identity adaptor, w̄ = the exact mean of the source mapping outputs.
- :func:`set_trainable` — which weights move: ``adaptor`` (GenDA: a, b and the head) or
  ``full`` (the baseline: every G and D weight, the same objective).
- :func:`likeness_diversity` — the metrics: feature distance of samples to the target and the
  mean pairwise feature distance among samples.
- :data:`DOMAIN_MAPS` — uint8 image maps (invert, bold) that make a target domain from a source
  digit; applied to source samples they give the "ideal adapted" reference for recall.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fmlab.errors import ConfigError, DataError
from fmlab.gan.nets import create_generator
from fmlab.gan.nets.base import Discriminator
from fmlab.gan.nets.style import GenDAGenerator, StyleGenerator

METHODS = ("adaptor", "full")


class AttributeClassifier(Discriminator):
    """A linear attribute head on a source D's backbone: ``logit = head(backbone.embed(x))``.

    A frozen backbone (``backbone_frozen``, set by :func:`set_trainable`) also stays in eval
    mode: spectral norm's power iteration would otherwise update its ``u`` vectors on every
    forward and so change the "frozen" weights.

    Args:
        backbone: the source discriminator; only its ``embed`` is used (its own ψ is not).
    """

    def __init__(self, backbone: Discriminator) -> None:
        super().__init__(backbone.feature_dim, num_classes=0, cond="none", sn=False)
        self.backbone = backbone
        self.backbone_frozen = False
        nn.init.normal_(self.psi.weight, 0.0, 0.01)

    def train(self, mode: bool = True) -> AttributeClassifier:
        super().train(mode)
        if self.backbone_frozen:
            self.backbone.eval()
        return self

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.embed(x)


@torch.no_grad()
def mean_w(G: StyleGenerator, n: int = 10000, seed: int = 0, batch: int = 1000) -> torch.Tensor:
    """w̄ = mean of the mapping outputs over ``n`` latents (eval mode: the buffer is untouched)."""
    gen = torch.Generator().manual_seed(int(seed))
    was = G.training
    G.eval()
    try:
        total = sum(G.map(G.sample_z(min(batch, n - i), gen)).sum(0) for i in range(0, n, batch))
    finally:
        G.train(was)
    return total / n


def to_genda(G: StyleGenerator, kwargs: dict[str, Any], train_psi: float = 0.7,
             n_w_avg: int = 10000, seed: int = 0) -> GenDAGenerator:
    """The adapted generator at initialisation: G's weights, a = 1, b = 0, w̄ = mean w.

    Args:
        G: a source ``style`` generator.
        kwargs: its constructor arguments (``generator.json``'s ``kwargs``).
        train_psi: truncation used while training.
        n_w_avg: latents averaged for w̄ (the source run's running w̄ is replaced by the exact
            mean, so ψ < 1 pulls toward the source's actual centre).
        seed: seed of those latents.

    Returns:
        A ``style_genda`` generator in eval mode.
    """
    if not isinstance(G, StyleGenerator) or isinstance(G, GenDAGenerator):
        raise ConfigError(f"GenDA adapts a 'style' generator (a mapping network), got "
                          f"{type(G).__name__}; train one with configs/gan/mnist_style.yaml")
    kw = {k: v for k, v in kwargs.items() if k != "w_avg_beta"}
    A = create_generator("style_genda", train_psi=train_psi, **kw)
    missing, unexpected = A.load_state_dict(G.state_dict(), strict=False)
    if unexpected or set(missing) != {"adaptor_a", "adaptor_b"}:
        raise ConfigError(f"source generator does not fit style_genda: missing {missing}, "
                          f"unexpected {unexpected}")
    with torch.no_grad():
        A.w_avg.copy_(mean_w(G, n_w_avg, seed))
    return A.eval()


def set_trainable(G: GenDAGenerator, D: AttributeClassifier, method: str) -> dict[str, int]:
    """Freeze all but the trained weights; returns the trainable counts ``{"g", "d"}``.

    ``adaptor``: G's (a, b) and D's head. ``full``: every weight of G (the adaptor stays at the
    identity, so this is plain fine-tuning) and of D, backbone included.
    """
    if method not in METHODS:
        raise ConfigError(f"method {method!r}: must be one of {', '.join(METHODS)}")
    adaptor = {id(p) for p in G.adaptor_parameters()}
    for p in G.parameters():
        p.requires_grad_((id(p) in adaptor) == (method == "adaptor"))
    D.requires_grad_(True)
    D.backbone_frozen = method == "adaptor"
    D.backbone.requires_grad_(not D.backbone_frozen)
    D.train(D.training)
    return {"g": sum(p.numel() for p in G.parameters() if p.requires_grad),
            "d": sum(p.numel() for p in D.parameters() if p.requires_grad)}


def likeness_diversity(features: np.ndarray | torch.Tensor,
                       target: np.ndarray | torch.Tensor) -> dict[str, float]:
    """Target likeness and diversity of samples in a fixed feature space.

    Args:
        features: (N, D) features of N ≥ 2 samples.
        target: (D,) or (1, D) features of the target image.

    Returns:
        ``likeness``: mean ‖f_i − f_target‖ (lower = closer to the target);
        ``diversity``: mean ‖f_i − f_j‖ over pairs i < j (higher = more varied; 0 when every
        sample is the same image — the collapse the paper warns of).
    """
    f = torch.as_tensor(np.asarray(features), dtype=torch.float64)
    t = torch.as_tensor(np.asarray(target), dtype=torch.float64).reshape(1, -1)
    if f.dim() != 2 or f.shape[0] < 2 or f.shape[1] != t.shape[1]:
        raise DataError(f"likeness_diversity: features must be (N >= 2, {t.shape[1]}), got "
                        f"{tuple(f.shape)}")
    d = torch.cdist(f, f)
    n = f.shape[0]
    return {"likeness": float((f - t).norm(dim=1).mean()),
            "diversity": float(d.sum() / (n * (n - 1)))}


def invert(images: np.ndarray) -> np.ndarray:
    """255 − x: white digits on black become black on white."""
    return 255 - images


def bold(images: np.ndarray) -> np.ndarray:
    """Thicker strokes: a 3×3 grey dilation (max filter) of (N, H, W) uint8 images."""
    x = torch.as_tensor(np.ascontiguousarray(images)).float()[:, None]
    return F.max_pool2d(x, 3, stride=1, padding=1)[:, 0].numpy().astype(np.uint8)


DOMAIN_MAPS: dict[str, Callable[[np.ndarray], np.ndarray] | None] = {
    "none": None, "invert": invert, "bold": bold,
}


def domain_map(name: str) -> Callable[[np.ndarray], np.ndarray] | None:
    """The map called ``name`` (None for ``none``); an unknown name lists the known ones."""
    if name not in DOMAIN_MAPS:
        raise ConfigError(f"target_domain {name!r}: must be one of {', '.join(DOMAIN_MAPS)}")
    return DOMAIN_MAPS[name]
