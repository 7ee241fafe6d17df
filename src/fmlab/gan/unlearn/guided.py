"""Guided stage 2: the settings and the assembly of anchor, negative push and step selection.

:class:`GuidedConfig` is the ``guided:`` section of ``fmlab gan unlearn``'s config. With
``guide_data`` set, a guide CNN is trained on those labelled training images in the run
(:mod:`~fmlab.gan.unlearn.guide`) and makes every training-time choice: the stage-0 split, the
latent sets of :mod:`~fmlab.gan.unlearn.latents` and the stopping step of
:mod:`~fmlab.gan.unlearn.stopping`. ``guide_data: null`` is the paper's setup: the
``--classifier`` splits the samples and stage 2 is the parameter-space repulsion alone.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch
from fmlab.errors import ConfigError
from fmlab.gan.diffaugment import parse_policy
from fmlab.gan.nets.base import Generator
from fmlab.gan.unlearn.guide import GuideConfig, GuideNet
from fmlab.gan.unlearn.latents import LatentTerms, OnlineLatentTerms, split_latents
from fmlab.gan.unlearn.stopping import SelectStep, Validator
from fmlab.utils.validation import finite_float


@dataclass
class GuidedConfig:
    """Stage-2 additions; every weight 0 and ``select_every`` 0 give the plain repulsion."""

    guide_data: str | None = "mnist:train"  # labelled TRAIN images for the guide; None = paper
    guide: GuideConfig = field(default_factory=GuideConfig)
    anchor_weight: float = 50.0       # λ_a on mean ‖G(z) − G₀(z)‖² over confident positives
    negative_weight: float = 5.0      # λ_n on the push out of the target (see push_margin)
    anchor_confidence: float = 0.9    # guide probability needed to anchor a latent
    negative_threshold: float = 1.0   # p_target that makes a latent negative besides argmax
    n_latents: int = 5000             # latents drawn for the two fixed sets
    online: bool = True               # fresh latents every step instead of the fixed sets
    push_augment: str = ""            # DiffAugment policy for a second view in the push (online)
    push_margin: float = 0.01         # > 0: push max(0, log p_target - log margin) (online)
    select_every: int = 100           # validate every k steps and keep the chosen step; 0 = last
    select_min_fall: float = 0.99     # validation share fall that counts as "removed"
    val_n: int = 2000                 # validation latents
    val_seed: int = 4242              # their seed (never the evaluation's)

    def __post_init__(self) -> None:
        for k in ("anchor_weight", "negative_weight"):
            setattr(self, k, finite_float(f"guided.{k}", getattr(self, k), low=0.0))
        for k in ("anchor_confidence", "negative_threshold", "select_min_fall"):
            v = finite_float(f"guided.{k}", getattr(self, k), low=0.0)
            if v > 1:
                raise ConfigError(f"guided.{k} must lie in [0, 1], got {v}")
            setattr(self, k, v)
        for k in ("n_latents", "val_n"):
            if getattr(self, k) < 10:
                raise ConfigError(f"guided.{k} must be >= 10, got {getattr(self, k)}")
        self.push_margin = finite_float("guided.push_margin", self.push_margin, low=0.0)
        if self.push_margin >= 1:
            raise ConfigError(f"guided.push_margin must lie in [0, 1), got {self.push_margin}")
        parse_policy(self.push_augment)
        if self.select_every < 0:
            raise ConfigError(f"guided.select_every must be >= 0, got {self.select_every}")
        if isinstance(self.guide_data, str) and self.guide_data.lower() in ("", "none", "null"):
            self.guide_data = None
        if self.guide_data is None:  # the paper's setup: every guided piece is off
            self.anchor_weight = self.negative_weight = 0.0
            self.select_every = 0

    @property
    def uses_guide_terms(self) -> bool:
        return self.anchor_weight > 0 or self.negative_weight > 0 or self.select_every > 0


def guide_classifier_fn(guide: GuideNet):
    """uint8 images → numpy logits with the guide (the stage-0 split's classifier)."""
    from fmlab.gan.prep import to_gan_input

    def fn(images: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return guide(to_gan_input(images)).numpy()
    return fn


@torch.no_grad()
def reference_features(guide: GuideNet, source: str, data_root: str | None,
                       target_class: int, n: int = 10000) -> np.ndarray:
    """Guide features of up to ``n`` real images of the other classes from ``source`` (the
    guide's own training split: the validation FID never touches test images)."""
    from fmlab.experiments.gan_eval import open_reference
    from fmlab.gan.prep import to_gan_input

    split = open_reference(source, data_root)
    keep = np.flatnonzero(np.asarray(split.labels) != target_class)[:n]
    x = to_gan_input(split.decode(keep))
    return torch.cat([guide.features(x[i:i + 1000]) for i in range(0, len(x), 1000)]).numpy()


def build_guided(G: Generator, guide: GuideNet, ref_features: np.ndarray, target_class: int,
                 cfg: GuidedConfig, seed: int, eval_seed: int | None = None
                 ) -> tuple[LatentTerms | OnlineLatentTerms | None, SelectStep | None]:
    """The latent terms (None when both weights are 0) and the step selector (None when
    ``select_every`` is 0) for stage 2 of G₀ = ``G``.

    Raises:
        ConfigError: the validation latents would be the evaluation's (``val_seed`` equal to
            ``eval_seed``).
    """
    terms = select = None
    if (cfg.anchor_weight > 0 or cfg.negative_weight > 0) and cfg.online:
        G0 = copy.deepcopy(G)
        terms = OnlineLatentTerms(G0, guide, target_class, cfg.anchor_weight,
                                  cfg.negative_weight, cfg.anchor_confidence, seed=seed,
                                  augment=cfg.push_augment, margin=cfg.push_margin)
    elif cfg.anchor_weight > 0 or cfg.negative_weight > 0:
        sets = split_latents(G, guide, target_class, cfg.n_latents, seed, cfg.anchor_confidence,
                             negative_threshold=cfg.negative_threshold)
        terms = LatentTerms(sets, guide, target_class, cfg.anchor_weight, cfg.negative_weight,
                            seed=seed)
    if cfg.select_every > 0:
        if eval_seed is not None and cfg.val_seed == eval_seed:
            raise ConfigError(f"guided.val_seed {cfg.val_seed} equals the evaluation's z seed; "
                              "the stopping step must not see the evaluation samples")
        val = Validator(guide, target_class, ref_features, cfg.val_n, cfg.val_seed)
        share0, _ = val(G)
        select = SelectStep(val, cfg.select_every, share0, cfg.select_min_fall)
    return terms, select

