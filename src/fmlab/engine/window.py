"""The one log window: sums of a run's per-step values between two ``metrics.jsonl`` lines.

Values that arrive as tensors (the engine's default path: the loss and the objective's logs)
stay tensors until the log line, so a step never waits for the device; values that arrive as
Python floats (a manual-optimisation objective's ``training_step`` logs, learning rates) are
summed in float64, exactly as a Python loop would.
"""

from __future__ import annotations

from typing import Any

import torch

from fmlab.engine.distributed import all_reduce_mean


class LogWindow:
    """Running sums since the last log line.

    Examples:
        >>> w = LogWindow()
        >>> w.add_floats({"d_loss": 1.0, "g_loss": 3.0}); w.steps += 1
        >>> w.add_floats({"d_loss": 2.0, "g_loss": 5.0}); w.steps += 1
        >>> w.float_means(world=1)
        {'d_loss': 1.5, 'g_loss': 4.0}
    """

    __slots__ = ("loss", "logs", "floats", "steps")

    def __init__(self) -> None:
        self.loss: torch.Tensor | float = 0.0
        self.logs: dict[str, torch.Tensor | float] = {}
        self.floats: dict[str, float] = {}
        self.steps = 0

    def add(self, loss: torch.Tensor, logs: dict[str, Any] | None, weight: float) -> None:
        """Add one micro-batch's loss and logs, scaled by ``weight`` (1 / accumulate).

        Args:
            loss: the scalar loss tensor (detached here).
            logs: the objective's logs (floats or 0-d tensors), or None.
            weight: the micro-batch's share of the step.
        """
        self.loss = self.loss + loss.detach().float() * weight
        for k, v in (logs or {}).items():
            self.add_log(k, v, weight)

    def add_log(self, key: str, value: Any, weight: float = 1.0) -> None:
        """Add one value (tensor or float) to the ``key`` sum, kept on the device."""
        v = value.detach().float() if isinstance(value, torch.Tensor) else float(value)
        self.logs[key] = self.logs.get(key, 0.0) + v * weight

    def add_floats(self, logs: dict[str, float]) -> None:
        """Add host floats (a manual-optimisation step's logs) to float64 sums."""
        floats = self.floats
        for k, v in logs.items():
            floats[k] = floats.get(k, 0.0) + v

    def float_means(self, world: int, device: torch.device | None = None) -> dict[str, float]:
        """Means of the float sums over the window's steps (and over ranks), keys sorted.

        Args:
            world: the number of processes; > 1 averages over ranks (every rank must call).
            device: where the cross-rank mean runs (the training device: NCCL needs CUDA).

        Returns:
            ``{key: mean}`` in sorted key order.
        """
        n = max(self.steps, 1)
        keys = sorted(self.floats)
        out = [self.floats[k] / n for k in keys]
        if world > 1:  # every rank reaches this line at the same step
            out = all_reduce_mean(torch.tensor(out, dtype=torch.float64, device=device)).cpu().tolist()
        return dict(zip(keys, out))

    def record(self, step: int, epoch: int, lr: float, world: int,
               images_per_s: float) -> dict[str, Any]:
        """The ``metrics.jsonl`` line of the default path: means of the loss and of the logs.

        Args:
            step: steps taken so far.
            epoch: the epoch of the last step.
            lr: the learning rate of the last step.
            world: the number of processes (> 1: means over ranks too).
            images_per_s: throughput since the last line.

        Returns:
            ``{"step", "epoch", "lr", "loss", "logs", "images_per_s"}``.
        """
        n = max(self.steps, 1)
        keys = sorted(self.logs)
        dev = self.loss.device if isinstance(self.loss, torch.Tensor) else None
        vals = torch.stack([torch.as_tensor(v, dtype=torch.float32, device=dev).reshape(())
                            for v in [self.loss, *(self.logs[k] for k in keys)]]) / n
        if world > 1:  # every rank reaches this line at the same step
            vals = all_reduce_mean(vals)
        out = vals.cpu().tolist()
        return {"step": step, "epoch": epoch, "lr": lr, "loss": out[0],
                "logs": dict(zip(keys, out[1:])), "images_per_s": images_per_s}
