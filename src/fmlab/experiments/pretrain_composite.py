"""Build the terms of a composite pre-training run (``objectives:`` in a ``fmlab pretrain`` config).

Each term is built exactly as a single-objective run builds its objective (the same constructor
arguments, ``needs``, and default transform at the backbone's input), on the one shared backbone.
Terms whose transforms are identical (same recipe, same arguments) share one transform, so they
see the same view tensors and the backbone encodes those views once
(:class:`fmlab.pretrain.composite.CompositeTransform`).
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace
from typing import Any

from fmlab.errors import ConfigError

__all__ = ["build_composite"]


def _term_names(cfg: Any) -> list[str]:
    """Log names: the objective names, numbered when one objective appears twice."""
    names = [t.name for t in cfg.objectives]
    return [f"{n}{names[:i].count(n) + 1}" if names.count(n) > 1 else n
            for i, n in enumerate(names)]


def build_composite(cls: type, cfg: Any, data: Any, bb: Any) -> tuple[Any, Any]:
    """The composite objective and its batch transform.

    Args:
        cls: the composite objective class (``builds_terms``).
        cfg: the run's config (``objectives`` holds the terms).
        data: the decoded training data (fills each term's ``needs``).
        bb: the shared backbone.

    Returns:
        ``(objective, CompositeTransform)``.
    """
    from fmlab.experiments.pretrain import _build_transform, _encoder_argument, _objective_arguments
    from fmlab.experiments.pretrain_config import objective_class, term_sections
    from fmlab.pretrain.base import Objective
    from fmlab.pretrain.composite import CompositeTransform, Term

    terms, transforms, groups, recipes = [], [], [], []
    for i, (term, name) in enumerate(zip(cfg.objectives, _term_names(cfg))):
        where = f"objectives[{i}]"
        objective, augment = term_sections(term, where)
        tcls = objective_class(term.name)
        view = SimpleNamespace(objective=objective, augment=augment, data=cfg.data, model=cfg.model)
        kwargs = _objective_arguments(tcls, view, data)
        try:
            obj = tcls(encoder=_encoder_argument(tcls, bb, cfg.model.arch, term.name), **kwargs)
        except ConfigError as e:
            raise ConfigError(f"{where} ({term.name}): {e}") from None
        if getattr(obj, "preprocess", None) is None:
            obj.preprocess = bb.preprocess
        recipe: tuple = ("own", i)  # an objective with its own wrap_transform keeps its views
        if type(obj).wrap_transform is Objective.wrap_transform:
            recipe = (tcls.default_transform.__func__, repr(dataclasses.asdict(augment)),
                      repr(obj.transform_arguments()), obj.transform_image_size(64))
        if recipe not in recipes:
            recipes.append(recipe)
            transforms.append(_build_transform(obj, view, bb.preprocess, data.image_shape))
        groups.append(recipes.index(recipe))
        terms.append(Term(name, obj, term.weight, term.schedule, term.ramp_steps))
    section = {k: v for k, v in dataclasses.asdict(cfg.objective).items() if k != "name"}
    try:
        composite = cls(encoder=bb, terms=terms, **section)
    except ConfigError as e:
        raise ConfigError(f"objective (composite): {e}") from None
    return composite, CompositeTransform(transforms, groups)
