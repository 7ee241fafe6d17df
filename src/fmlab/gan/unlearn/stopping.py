"""Choose stage 2's stopping step on a validation criterion that never sees the evaluation.

Every ``every`` steps the G being returned (the EMA) is scored on its own latents (a seed of
their own, never the evaluation's z) by the training-time guide: the target's share among the
samples, and the Fréchet distance of the other samples' guide features to the guide features
of real *training* images of the other classes. The chosen step is

- among the checks whose share fell by at least ``min_fall`` relative to G₀ on the same latents,
  the one with the lowest validation FID (remove enough, then damage least);
- if none reached it, the one with the largest fall (ties: lower FID).

The rule reads only these records, so the evaluation's samples, its classifier and the test
images cannot influence which weights are kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from fmlab.engine.callbacks import Callback
from fmlab.errors import ConfigError


@dataclass
class ValRecord:
    step: int
    share: float  # target share among the validation samples (guide)
    fid: float    # guide-feature FID of the non-target samples vs real train images


def choose(records: Sequence[ValRecord], share0: float, min_fall: float) -> int:
    """Index of the chosen record (see the module docstring).

    Examples:
        >>> rs = [ValRecord(100, 0.05, 3.0), ValRecord(200, 0.01, 9.0), ValRecord(300, 0.005, 6.0)]
        >>> choose(rs, 0.2, 0.9)   # steps 200 and 300 fell >= 90 %; 300 has the lower FID
        2
        >>> choose(rs, 0.2, 0.99)  # none fell 99 %: the largest fall
        2
    """
    if not records:
        raise ConfigError("stopping rule: no validation records (is select_every > steps?)")
    falls = [1.0 - r.share / share0 if share0 > 0 else 0.0 for r in records]
    meets = [i for i, f in enumerate(falls) if f >= min_fall]
    if meets:
        return min(meets, key=lambda i: (records[i].fid, i))
    return max(range(len(records)), key=lambda i: (falls[i], -records[i].fid, -i))


class Validator:
    """(share, FID) of a generator on fixed validation latents, scored by the guide.

    Args:
        guide: the training-time classifier (:class:`~fmlab.gan.unlearn.guide.GuideNet`).
        target_class: the class being removed.
        ref_features: guide features of real training images of the other classes.
        n: validation latents.
        seed: their seed (must differ from the evaluation's; the caller checks).
    """

    def __init__(self, guide: nn.Module, target_class: int, ref_features: np.ndarray,
                 n: int = 2000, seed: int = 4242, batch_size: int = 500) -> None:
        if n < 10:
            raise ConfigError(f"validation latents: need >= 10, got {n}")
        self.guide, self.target, self.ref = guide, int(target_class), ref_features
        self.n, self.seed, self.bs = int(n), int(seed), int(batch_size)

    @torch.no_grad()
    def __call__(self, G: nn.Module) -> tuple[float, float]:
        from fmlab.metrics import fid

        gen = torch.Generator().manual_seed(self.seed)
        z = G.sample_z(self.n, gen)
        was = G.training
        G.eval()
        try:
            feats, preds = [], []
            for i in range(0, self.n, self.bs):
                f = self.guide.features(G(z[i:i + self.bs]))
                feats.append(f)
                preds.append(self.guide.head(f).argmax(1))
        finally:
            G.train(was)
        f, p = torch.cat(feats).numpy(), torch.cat(preds).numpy()
        keep = p != self.target
        share = float(np.mean(~keep))
        return share, float(fid(self.ref, f[keep])) if keep.sum() > 2 else float("inf")


class SelectStep(Callback):
    """Engine callback: validate every ``every`` steps, keep the chosen step's EMA weights.

    ``share0`` is G₀'s validation share (the baseline of the fall). After the fit,
    :meth:`load_best` copies the chosen weights into a generator.
    """

    key = "unlearn_select_step"

    def __init__(self, validator: Validator, every: int, share0: float,
                 min_fall: float) -> None:
        if every < 1:
            raise ConfigError(f"select_every must be >= 1, got {every}")
        self.validator, self.every = validator, int(every)
        self.share0, self.min_fall = float(share0), float(min_fall)
        self.records: list[ValRecord] = []
        self.best: dict[str, torch.Tensor] | None = None
        self.best_index = -1

    def on_after_step(self, trainer) -> None:
        if trainer.step % self.every:
            return
        obj = trainer.objective
        G = obj.G_ema.module if getattr(obj, "G_ema", None) is not None else obj.G
        share, fd = self.validator(G)
        self.records.append(ValRecord(int(trainer.step), share, fd))
        i = choose(self.records, self.share0, self.min_fall)
        if i == len(self.records) - 1:
            self.best_index = i
            # the whole state: a generator with BatchNorm (DCGAN) needs its running stats too
            self.best = {k: v.detach().clone() for k, v in G.state_dict().items()}

    def load_best(self, G: nn.Module) -> None:
        """Copy the chosen step's weights and buffers into ``G`` (no-op before any check)."""
        if self.best is not None:
            G.load_state_dict(self.best)

    def summary(self) -> dict:
        """The records, the chosen step and the rule's settings (for the report)."""
        chosen = self.records[self.best_index].step if self.best_index >= 0 else None
        return {"share0": self.share0, "min_fall": self.min_fall, "every": self.every,
                "chosen_step": chosen, "records": [asdict(r) for r in self.records]}
