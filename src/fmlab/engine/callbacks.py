"""Callbacks: what a run does around its steps besides training (evaluations, grids, budgets).

The engine calls every hook on every rank, in this order::

    on_fit_start(trainer, resumed_from)        after a checkpoint is restored, before step 1
    repeat:  should_stop(trainer)              True ends the loop before the next step
             on_train_step_start(trainer)      brackets the step itself (timing)
             <the step>
             on_train_step_end(trainer)
             on_log(trainer, record)           add keys to a training log line (when one is due)
             on_after_step(trainer)            periodic work: evaluations, sample grids
             <checkpoint when due>
    <final checkpoint>
    on_fit_end(trainer)                        final evaluation, exports

A callback that writes files should do so only when ``trainer.is_main``. State a resumed run
needs (e.g. CPU time used) comes from ``state_dict()``, saved in every checkpoint under
``callbacks[key]`` and handed back to ``load_state_dict`` on resume.
"""

from __future__ import annotations

import time
from typing import Any

import torch


class Callback:
    """No-op hooks; subclass and override what you need (see the module docstring).

    Attributes:
        key: the name of this callback's state in a checkpoint (unique within a run).
    """

    key = "callback"

    def on_fit_start(self, trainer: Any, resumed_from: int | None) -> None:
        """Called once per fit, after any checkpoint is restored."""

    def should_stop(self, trainer: Any) -> bool:
        """True ends training before the next step (the run still checkpoints and finishes)."""
        return False

    def on_train_step_start(self, trainer: Any) -> None:
        """Right before a step's seeding, batch and update."""

    def on_train_step_end(self, trainer: Any) -> None:
        """Right after a step's update (``trainer.step`` is still the step's 0-based index)."""

    def on_log(self, trainer: Any, record: dict[str, Any]) -> None:
        """Add keys to a training log record before it is written."""

    def on_after_step(self, trainer: Any) -> None:
        """After the step's log line and before its checkpoint; ``trainer.step`` counts the
        steps taken."""

    def on_fit_end(self, trainer: Any) -> None:
        """After the final checkpoint (also when a finished run is resumed)."""

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs (weights_only-loadable values)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s values."""


class CPUBudget(Callback):
    """Stop a run once its training steps used ``minutes`` of process CPU time (0: never).

    Only the steps count (not evaluations, grids or checkpoints), so a budget compares methods
    by the compute they train with. The time used is checkpointed, so a resumed run continues
    the same budget, and it is written as ``train_cpu_s`` on every training log line. Under
    ``torchrun`` rank 0's clock decides for every rank.

    Args:
        minutes: the budget; 0 disables the stop (the time is still counted and logged).

    Examples:
        >>> b = CPUBudget(minutes=0.0)
        >>> b.on_train_step_start(None); b.on_train_step_end(None)
        >>> b.used_s >= 0.0 and b.state_dict()["train_cpu_s"] == b.used_s
        True
    """

    key = "cpu_budget"

    def __init__(self, minutes: float = 0.0) -> None:
        self.budget_s = float(minutes) * 60.0
        self.used_s = 0.0
        self.stopped = False
        self._t0 = 0.0

    def should_stop(self, trainer: Any) -> bool:
        if not self.budget_s:
            return False
        stop = self.used_s >= self.budget_s
        info = getattr(trainer, "dist_info", None)
        if info is not None and info.world_size > 1:
            import torch.distributed as dist

            flag = torch.tensor([float(stop)], device=trainer.device)
            dist.broadcast(flag, 0)
            stop = bool(flag.item())
        self.stopped = stop
        return stop

    def on_train_step_start(self, trainer: Any) -> None:
        self._t0 = time.process_time()

    def on_train_step_end(self, trainer: Any) -> None:
        self.used_s += time.process_time() - self._t0

    def on_log(self, trainer: Any, record: dict[str, Any]) -> None:
        record["train_cpu_s"] = round(self.used_s, 3)

    def state_dict(self) -> dict[str, Any]:
        return {"train_cpu_s": self.used_s}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.used_s = float(state.get("train_cpu_s", 0.0))
