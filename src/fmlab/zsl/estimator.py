"""The generative ZSL estimator (LisGAN, and f-CLSWGAN without soul samples): fit / decision_function.

fit: (1) min-max scale the seen training features (statistics of seen data only); (2) fit the
softmax classifier f_cls on them and freeze it; (3) LisGAN only: soul samples = k-means centres
per seen class; (4) train the conditional WGAN-GP with :class:`~fmlab.engine.Trainer`;
(5) generate ``n_synth`` features per unseen class from its semantic vector; (6) fit two softmax
classifiers: over the unseen classes on synthetic features (ZSL), and over all classes on real
seen + synthetic unseen features (GZSL). ``n_synth = 0`` generates as many per unseen class as
the seen classes have on average, so the GZSL classifier sees balanced classes (a choice made
from seen-class counts only, never from unseen test data).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from fmlab.engine.config import OptimConfig, ScheduleConfig, TrainerConfig
from fmlab.zsl.nets import FeatureCritic, FeatureGenerator
from fmlab.zsl.objective import FeatureGANConfig, FeatureGANObjective
from fmlab.zsl.soul import SoulSampleLoss, soul_samples


def _softmax(X: torch.Tensor, y: torch.Tensor, n_classes: int, C: float
             ) -> tuple[torch.Tensor, torch.Tensor]:
    from fmlab.adapt.linear import fit_logistic

    W, b, _ = fit_logistic(X.float(), y, n_classes, C)
    return W, b


class GenerativeZSL:
    """Feature-generating zero-shot classifier over global class indices.

    Args:
        gan: the GAN step's weights.
        trainer: the engine's loop settings (``batch_size`` = ``n_critic`` × critic batch).
        optim: ``{"g": ..., "d": ...}`` optimiser configs.
        schedule: the learning-rate schedule.
        soul: use LisGAN's soul-sample regulariser (False: f-CLSWGAN).
        C: inverse regularisation of the softmax classifiers (f_cls and the final ones).
        n_synth: synthetic features per unseen class (0: the seen classes' mean count).
        run_dir: the engine's run folder (metrics.jsonl, checkpoint), or None.
    """

    def __init__(self, gan: FeatureGANConfig, trainer: TrainerConfig,
                 optim: Mapping[str, OptimConfig], schedule: ScheduleConfig | None = None,
                 soul: bool = True, C: float = 1.0, n_synth: int = 0,
                 run_dir: str | Path | None = None) -> None:
        self.gan, self.trainer, self.optim = gan, trainer, dict(optim)
        self.schedule = schedule or ScheduleConfig(name="constant")
        self.soul, self.C, self.n_synth, self.run_dir = soul, float(C), int(n_synth), run_dir

    def _scale(self, X: torch.Tensor) -> torch.Tensor:
        return (torch.as_tensor(X, dtype=torch.float32) - self.lo_) / self.span_

    def _objective(self, Xs: torch.Tensor, y_local: torch.Tensor, sem_seen: torch.Tensor,
                   seed: int) -> FeatureGANObjective:
        torch.manual_seed(seed)
        d, s = Xs.shape[1], sem_seen.shape[1]
        G = FeatureGenerator(self.gan.z_dim, s, d, self.gan.hidden)
        D = FeatureCritic(d, s, self.gan.hidden)
        W, b = _softmax(Xs, y_local, len(sem_seen), self.C)
        soul = None
        if self.soul:
            souls = soul_samples(Xs.numpy(), y_local.numpy(), len(sem_seen), self.gan.soul_k)
            soul = SoulSampleLoss(souls, self.gan.soul_weight, self.gan.proto_weight)
        return FeatureGANObjective(G, D, sem_seen, W, b, self.gan, soul)

    def fit(self, X: torch.Tensor, y: np.ndarray, semantics: torch.Tensor, seen: Sequence[int],
            unseen: Sequence[int]) -> GenerativeZSL:
        """Train on seen features ``X`` (N, D) with global labels ``y``; ``semantics`` (K, S)."""
        from fmlab.engine import TensorSource, Trainer

        X = torch.as_tensor(X, dtype=torch.float32)
        self.lo_ = X.min(0).values
        self.span_ = (X.max(0).values - self.lo_).clamp_min(1e-6)
        Xs = self._scale(X)
        to_local = {c: i for i, c in enumerate(seen)}
        y_local = torch.as_tensor([to_local[int(c)] for c in y], dtype=torch.int64)
        self.objective_ = self._objective(Xs, y_local, semantics[list(seen)], self.trainer.seed)
        Trainer(self.objective_, TensorSource(Xs, y_local), self.trainer, self.optim,
                self.schedule, run_dir=self.run_dir).fit()
        n = self.n_synth or int(round(len(X) / len(seen)))
        fake = self.objective_.generate(semantics[list(unseen)], n, seed=self.trainer.seed + 1)
        self.synthetic_ = fake  # scaled space, class-major over `unseen`
        u_local = torch.arange(len(unseen)).repeat_interleave(n)
        self.zsl_W_, self.zsl_b_ = _softmax(fake, u_local, len(unseen), self.C)
        k = len(semantics)
        y_all = torch.cat([torch.as_tensor(np.asarray(y), dtype=torch.int64),
                           torch.as_tensor(list(unseen)).repeat_interleave(n)])
        self.W_, self.b_ = _softmax(torch.cat([Xs, fake]), y_all, k, self.C)
        return self

    def decision_function(self, X: torch.Tensor) -> np.ndarray:
        """GZSL logits over all classes: (N, K)."""
        return (self._scale(X) @ self.W_.T + self.b_).numpy()

    def zsl_decision_function(self, X: torch.Tensor) -> np.ndarray:
        """ZSL logits over the unseen classes only: (N, U)."""
        return (self._scale(X) @ self.zsl_W_.T + self.zsl_b_).numpy()
