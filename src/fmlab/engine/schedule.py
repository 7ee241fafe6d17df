"""Schedules as pure functions of the step, so resuming needs nothing but the step counter.

``step`` is always the 0-based index of the optimiser step about to be taken (for learning rates)
or just taken (for momentum hooks); ``total`` the run's number of optimiser steps.
"""

from __future__ import annotations

import math
from typing import Any

from fmlab.errors import ConfigError


def warmup_cosine(step: int, total: int, base: float, final: float = 0.0, warmup: int = 0,
                  cosine: bool = True) -> float:
    """Linear warmup to ``base`` over ``warmup`` steps, then cosine decay towards ``final``.

    Warmup: ``base * (step + 1) / warmup`` — the first step already moves (no wasted lr=0 step)
    and the last warmup step uses ``base``. Decay (DINO/MAE form): with
    ``t = (step - warmup) / (total - warmup)``, ``final + (base - final) * (1 + cos(pi t)) / 2``;
    ``cosine=False`` keeps ``base`` after warmup. Steps beyond ``total`` stay at ``final``.
    """
    if step < warmup:
        return base * (step + 1) / warmup
    if not cosine:
        return base
    span = max(total - warmup, 1)
    t = min((step - warmup) / span, 1.0)
    return final + (base - final) * 0.5 * (1.0 + math.cos(math.pi * t))


def cosine_momentum(step: int, total: int, base: float = 0.996, final: float = 1.0) -> float:
    """EMA momentum rising from ``base`` to ``final`` on a half cosine (BYOL, DINO, MoCo v3).

    ``m = final - (final - base) * (1 + cos(pi * t)) / 2`` with ``t = step / total`` clipped to
    [0, 1]. The one copy of this schedule (the engine's ``EMA``, MoCo's key encoder and DINO's
    teacher all use it).

    Args:
        step: the optimiser step just taken (0-based).
        total: the run's number of optimiser steps. ``total <= 0`` (length unknown, e.g. an
            objective driven outside the engine) keeps ``base``: the average keeps moving,
            whereas ``final`` = 1 would freeze it silently.
        base: momentum at step 0.
        final: momentum at ``total`` and after.

    Returns:
        The momentum for this step.

    Examples:
        >>> cosine_momentum(0, 100, 0.996), cosine_momentum(100, 100, 0.996)
        (0.996, 1.0)
        >>> round(cosine_momentum(50, 100, 0.996), 6)
        0.998
        >>> cosine_momentum(5, 0, 0.99)
        0.99
    """
    if total <= 0:
        return base
    t = min(max(step, 0) / total, 1.0)
    return final - (final - base) * 0.5 * (1.0 + math.cos(math.pi * t))


class LRSchedule:
    """Sets every param group's ``lr`` (and the decayed groups' ``weight_decay``) for a step.

    A group may carry ``lr_scale`` (e.g. a frozen-then-thawed layer): its lr is the scheduled
    value times that scale. Stateless apart from its constants: the checkpoint stores the step.
    """

    def __init__(self, base_lr: float, total_steps: int, warmup_steps: int = 0,
                 min_lr: float = 0.0, name: str = "cosine", base_wd: float = 0.0,
                 final_wd: float | None = None) -> None:
        if name not in ("cosine", "constant"):
            raise ConfigError(f"schedule.name: {name!r} is not one of 'cosine', 'constant'")
        if total_steps < 1:
            raise ConfigError(f"the run has {total_steps} steps; it needs at least one")
        if warmup_steps >= total_steps and warmup_steps > 0:
            raise ConfigError(f"schedule.warmup_steps: warmup of {warmup_steps} steps must be "
                              f"shorter than the run ({total_steps} steps)")
        self.base_lr = base_lr
        self.total_steps = total_steps
        self.warmup_steps = warmup_steps
        self.min_lr = min_lr
        self.cosine = name == "cosine"
        self.base_wd = base_wd
        self.final_wd = final_wd

    def lr(self, step: int) -> float:
        return warmup_cosine(step, self.total_steps, self.base_lr, self.min_lr,
                             self.warmup_steps, self.cosine)

    def weight_decay(self, step: int) -> float:
        if self.final_wd is None:
            return self.base_wd
        # no warmup on weight decay: cosine from base to final over the whole run (DINO)
        return warmup_cosine(step, self.total_steps, self.base_wd, self.final_wd, 0, True)

    def apply(self, optimizer: Any, step: int) -> float:
        """Write this step's values into ``optimizer.param_groups``; returns the lr."""
        lr = self.lr(step)
        wd = self.weight_decay(step) if self.final_wd is not None else None
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
            if wd is not None and group.get("decay", True):
                group["weight_decay"] = wd
        return lr

    def state_dict(self) -> dict[str, Any]:
        return {"base_lr": self.base_lr, "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps, "min_lr": self.min_lr, "cosine": self.cosine,
                "base_wd": self.base_wd, "final_wd": self.final_wd}
