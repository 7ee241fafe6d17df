"""What a PEFT method declares for fine-tuning workflows (``fmlab finetune``): its recipe and hooks.

A method class carries its own facts, so a new method is one file (peft's
``register_peft_method`` idea) and the workflow derives its method list, defaults and help texts
from :data:`fmlab.peft.METHODS`:

* ``recipe`` — a :class:`Recipe`: the optimiser defaults of a fine-tuning run (AdamW, cosine
  schedule with 10% linear warmup; learning rate, weight decay and optimiser steps per method).
  A method without one can be applied with :func:`fmlab.peft.apply` but is not offered by
  ``fmlab finetune`` (which says so in one line);
* ``trains_norm_statistics`` — whether, under ``bn_stats=auto``, BatchNorm running statistics are
  updated (True for the methods that train the norm layers, so their statistics follow);
* ``finetune_settings`` — an optional dataclass of extra ``--set`` keys the method reads (PELA's
  distillation settings);
* ``prepare_finetune(model, apply, ctx)`` — applies the method for a run; the default calls
  ``apply(model)``. A method that needs more (PELA distils the compressed model against the
  original first) overrides it and gets what the workflow offers through :class:`FinetuneContext`;
* ``unlabelled_images(settings)`` — how many unlabelled train images the hook needs (None: none).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["FinetuneContext", "Recipe"]


@dataclass(frozen=True)
class Recipe:
    """The fine-tuning defaults of one method (each one can be overridden with ``--set``).

    Args:
        lr: AdamW learning rate (``optim.lr``).
        weight_decay: AdamW weight decay (``optim.weight_decay``).
        max_steps: optimiser steps (``trainer.max_steps``).

    Examples:
        >>> Recipe(lr=2e-3).describe()
        'lr 0.002, weight decay 0, 200 steps'
    """

    lr: float
    weight_decay: float = 0.0
    max_steps: int = 200

    def describe(self) -> str:
        """One line for help texts.

        Returns:
            e.g. ``"lr 0.0001, weight decay 0.05, 200 steps"``.
        """
        return f"lr {self.lr:g}, weight decay {self.weight_decay:g}, {self.max_steps} steps"


@dataclass
class FinetuneContext:
    """What a fine-tuning workflow offers a method's ``prepare_finetune`` hook.

    Args:
        settings: the run's settings (``--set`` keys, including the method's
            ``finetune_settings`` fields).
        device: the training device.
        head: the name of the task-head module every method trains.
        fit: ``fit(objective, images, labels, trainer, optim, schedule, transform)`` trains an
            objective through the workflow's engine and returns its result (``history``, ``step``).
        unlabelled: returns the unlabelled training images the method asked for.
        write_history: ``write_history(filename, history)`` writes a metrics log in the run dir.
        seconds: the hook adds named timings here (e.g. ``"distill"``), reported with the run as
            ``<name>_seconds``.

    Examples:
        >>> ctx = FinetuneContext(settings=None, device=torch.device("cpu"), head="head")
        >>> ctx.seconds
        {}
    """

    settings: Any
    device: torch.device
    head: str
    fit: Callable[..., Any] | None = None
    unlabelled: Callable[[], torch.Tensor] | None = None
    write_history: Callable[[str, list[dict[str, Any]]], None] | None = None
    seconds: dict[str, float] = field(default_factory=dict)


def settings_fields(cls: type) -> list[tuple[str, Any, Any]]:
    """``(name, type, dataclasses.field)`` of a method's ``finetune_settings`` dataclass.

    Args:
        cls: the dataclass.

    Returns:
        The fields, ready for :func:`dataclasses.make_dataclass`.
    """
    import typing

    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        default: Any = (dataclasses.field(default_factory=f.default_factory)
                        if f.default_factory is not dataclasses.MISSING
                        else dataclasses.field(default=f.default))
        out.append((f.name, hints[f.name], default))
    return out
