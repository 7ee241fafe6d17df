"""Several pre-training objectives on one backbone: a weighted sum, each term with its own heads.

Real recipes mix losses (supervised + contrastive + masked reconstruction in heuristic multi-task
pre-training; the terms of M3I). A composite is a configuration of objectives that already exist,
trained by the same engine, so checkpoints, exact resume, DDP and bf16 behave as for one objective.

    L(t) = Σ_i w_i(t) · L_i                                   (weighting "fixed")
    L(t) = Σ_i ½ · [exp(−s_i) · w_i(t) · L_i + s_i]           (weighting "uncertainty")

``w_i(t)`` is the term's weight, constant or ramped linearly from 0 over its first ``ramp_steps``
optimiser steps; ``s_i = log σ_i²`` are learned (homoscedastic uncertainty weighting, Kendall et
al. 2018), initialised to 0. Every term is logged unweighted (``<term>_loss``) next to its
effective weight and its own logs (``<term>/<key>``).

The terms share the encoder module (one set of weights; each term keeps its own heads). Terms whose
views are drawn by the same transform receive the same view tensors (see
:class:`CompositeTransform`), and during one forward the encoder's output for an input it has
already encoded is reused, so the backbone runs once for views the terms share.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal, NamedTuple

import torch
from torch import Tensor, nn

from fmlab.errors import ConfigError, DataError
from fmlab.pretrain.base import ExportPatch, Objective, register_objective

__all__ = ["CompositeObjective", "CompositeTransform", "Term", "term_weight"]


class Term(NamedTuple):
    """One built term: its log name, objective, base weight and schedule."""

    name: str
    objective: Objective
    weight: float = 1.0
    schedule: str = "constant"  # or "linear": 0 -> weight over ramp_steps optimiser steps
    ramp_steps: int = 0


def term_weight(weight: float, schedule: str, ramp_steps: int, steps_done: int) -> float:
    """The effective weight after ``steps_done`` optimiser steps.

    Examples:
        >>> [term_weight(2.0, "linear", 4, s) for s in (0, 1, 3, 9)]
        [0.5, 1.0, 2.0, 2.0]
        >>> term_weight(2.0, "constant", 4, 0)
        2.0
    """
    if schedule == "constant" or ramp_steps <= 0:
        return float(weight)
    if schedule == "linear":
        return float(weight) * min(1.0, (steps_done + 1) / ramp_steps)
    raise ConfigError(f"schedule: {schedule!r} is not one of 'constant', 'linear'")


class CompositeTransform:
    """One batch per term from one raw batch; terms in the same ``group`` share their batch.

    Args:
        transforms: one ``transform(batch, generator) -> dict`` per distinct view recipe.
        groups: for each term, the index of its transform.
    """

    def __init__(self, transforms: Sequence[Any], groups: Sequence[int]) -> None:
        self.transforms, self.groups = list(transforms), list(groups)

    def __call__(self, batch: Mapping[str, Any], generator: torch.Generator) -> dict[str, Any]:
        parts = [t(batch, generator) for t in self.transforms]
        return {"terms": [parts[g] for g in self.groups]}


@contextlib.contextmanager
def _reuse_outputs(module: nn.Module) -> Iterator[None]:
    """Within the block, calling ``module`` again on an input equal to one it has already
    encoded (same shape, dtype and values; no other arguments; no gradient wanted on the input)
    returns the first call's output instead of recomputing it. Values are compared, not
    identities, because objectives build their own input tensors (SimCLR concatenates its views)."""
    cache: list[tuple[Tensor, Any]] = []
    plain = module.forward

    def forward(x: Any, *args: Any, **kwargs: Any) -> Any:
        if args or kwargs or not isinstance(x, Tensor) or x.requires_grad:
            return plain(x, *args, **kwargs)
        for seen, out in cache:
            if seen.shape == x.shape and seen.dtype == x.dtype and torch.equal(seen, x):
                return out
        out = plain(x)
        cache.append((x, out))
        return out

    module.forward = forward
    try:
        yield
    finally:
        del module.forward  # back to the class's forward


@register_objective("composite")
class CompositeObjective(Objective):
    """Weighted sum of objectives sharing one encoder (``objectives:`` in the pre-training config).

    Args:
        encoder: the shared backbone (each term was built on the same module).
        terms: the built terms, in config order.
        weighting: ``fixed`` (the weights as given) or ``uncertainty`` (learned log-variances).
        feature_dim: the encoder's feature size (default: the first term's).

    Examples:
        >>> from torch import nn
        >>> class Mean(Objective):
        ...     def __init__(self, encoder, c):
        ...         super().__init__(); self._set_encoder(encoder, 4); self.c = c
        ...     def forward(self, batch):
        ...         loss = (self.encoder(batch["x"]) - self.c).pow(2).mean(); return loss, {}
        >>> enc = nn.Linear(3, 4)
        >>> obj = CompositeObjective(enc, [Term("a", Mean(enc, 0.0), 1.0), Term("b", Mean(enc, 1.0), 0.5)])
        >>> x = torch.ones(2, 3)
        >>> loss, logs = obj({"terms": [{"x": x}, {"x": x}]})
        >>> bool(torch.isclose(loss, logs["a_loss"] + 0.5 * logs["b_loss"]))
        True
    """

    filled_by_run = ("encoder", "feature_dim", "head", "terms")
    builds_terms = True  # fmlab pretrain builds the terms from the config's ``objectives`` list

    def __init__(self, encoder: nn.Module, terms: Sequence[Term],
                 weighting: Literal["fixed", "uncertainty"] = "fixed",
                 feature_dim: int | None = None) -> None:
        super().__init__()
        if not terms:
            raise ConfigError("objectives: a composite needs at least one term")
        if weighting not in ("fixed", "uncertainty"):
            raise ConfigError(f"weighting: {weighting!r} is not one of 'fixed', 'uncertainty'")
        self._set_encoder(encoder, feature_dim if feature_dim is not None
                          else getattr(terms[0].objective, "feature_dim", None))
        self.weighting = weighting
        self.specs = [(t.name, float(t.weight), t.schedule, int(t.ramp_steps)) for t in terms]
        self.terms = nn.ModuleList(t.objective for t in terms)
        self.log_vars = nn.Parameter(torch.zeros(len(terms))) if weighting == "uncertainty" else None
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.long))  # resumes with the weights

    def weights(self) -> list[float]:
        """Each term's effective weight at the current step (before uncertainty weighting)."""
        done = int(self.steps_done)
        return [term_weight(w, s, r, done) for _, w, s, r in self.specs]

    def combine(self, losses: Sequence[Tensor]) -> Tensor:
        """The total loss of the terms' unweighted losses (the formula in the module doc)."""
        w = torch.tensor(self.weights(), dtype=losses[0].dtype, device=losses[0].device)
        stacked = torch.stack(list(losses))
        if self.log_vars is None:
            return (w * stacked).sum()
        s = self.log_vars.to(stacked.dtype)
        return 0.5 * (torch.exp(-s) * w * stacked + s).sum()

    def forward(self, batch: Mapping[str, Any]) -> tuple[Tensor, dict[str, Any]]:
        parts = batch.get("terms")
        if not isinstance(parts, (list, tuple)) or len(parts) != len(self.terms):
            raise DataError(f"composite: batch['terms'] must hold {len(self.terms)} batches "
                            f"(one per objective; use CompositeTransform), got {type(parts).__name__}")
        losses, logs = [], {}
        with _reuse_outputs(self.encoder):
            for (name, *_), obj, part in zip(self.specs, self.terms, parts):
                loss, sub = obj(part)
                losses.append(loss.float())
                logs[f"{name}_loss"] = loss.detach()
                logs.update({f"{name}/{k}": v for k, v in sub.items() if k != "loss"})
        for (name, *_), w in zip(self.specs, self.weights()):
            logs[f"{name}_weight"] = w
        if self.log_vars is not None:
            logs.update({f"{name}_log_var": self.log_vars[i].detach()
                         for i, (name, *_) in enumerate(self.specs)})
        return self.combine(losses), logs

    @classmethod
    def default_transform(cls, image_size: int = 32, mean: Any = None, std: Any = None,
                          channels: int | None = None) -> Any:
        """No views of its own (so no ``augment`` keys): each term's ``augment`` section sets its
        views, and :func:`fmlab.experiments.pretrain_composite.build_composite` combines them."""
        raise ConfigError("a composite's views come from its terms (objectives[i].augment)")

    # -- engine hooks, passed to every term

    def on_train_start(self, max_steps: int) -> None:
        for obj in self.terms:
            obj.on_train_start(max_steps)

    def on_before_optimizer_step(self, step: int, max_steps: int) -> None:
        for obj in self.terms:
            hook = getattr(obj, "on_before_optimizer_step", None)
            if hook is not None:
                hook(step, max_steps)

    def on_after_optimizer_step(self, step: int, max_steps: int) -> None:
        for obj in self.terms:
            obj.on_after_optimizer_step(step, max_steps)
        self.steps_done.fill_(step + 1)

    # -- declarations read by ``fmlab pretrain``

    def save_picture(self, images: Tensor, path: Any) -> Any:
        """Each term that draws itself writes ``<stem>_<term>.png``; returns the first written."""
        from pathlib import Path

        path, first = Path(path), None
        for (name, *_), obj in zip(self.specs, self.terms):
            out = obj.save_picture(images, path.with_name(f"{path.stem}_{name}.png"))
            first = first or out
        return first

    def export_patch(self, train_kwargs: Mapping[str, Any]) -> ExportPatch:
        """The terms' patches merged (they patch the same encoder, so they must agree)."""
        tensors: dict[str, Tensor] = {}
        kwargs, notes = dict(train_kwargs), []
        for obj in self.terms:
            patch = obj.export_patch(train_kwargs)
            tensors.update(patch.tensors)
            if patch.kwargs != dict(train_kwargs):
                kwargs = dict(patch.kwargs)
            if patch.note:
                notes.append(patch.note)
        return ExportPatch(tensors, kwargs, "; ".join(notes))
