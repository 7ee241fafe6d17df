"""Objectives register at their definition and declare what the run fills; one cosine_momentum."""

from __future__ import annotations

import inspect
import math
import sys
from pathlib import Path

import pytest

import fmlab.pretrain as P
from fmlab.engine.schedule import cosine_momentum
from fmlab.pretrain import OBJECTIVES, Objective, register_objective
from fmlab.pretrain.base import DATA_NEEDS


def test_every_objective_is_registered_in_its_own_module_under_its_name():
    for name in OBJECTIVES.names():
        cls = OBJECTIVES.get(name)
        assert cls.name == name
        module = sys.modules[cls.__module__]
        # the decorator sits on the class, in the file that defines it
        assert f'@register_objective("{name}")' in inspect.getsource(module), name
    # pretrain/__init__.py only imports (no tuple loop, no registry calls)
    init = Path(P.__file__).read_text()
    assert "OBJECTIVES.add" not in init and ".register(" not in init and "for _cls" not in init


def test_needs_are_data_the_run_has_or_provided_by_the_class():
    for name in OBJECTIVES.names():
        cls = OBJECTIVES.get(name)
        params = inspect.signature(cls.__init__).parameters
        for need in cls.needs:
            if need == "labels":
                continue
            assert need in params, (name, need)  # every filled need is a constructor argument
            if need not in DATA_NEEDS:
                assert cls.provide.__func__ is not Objective.provide.__func__, (name, need)
    assert OBJECTIVES.get("look").needs == ("labels", "num_samples")
    assert set(OBJECTIVES.get("supervised").needs) == {"labels", "num_classes"}
    assert OBJECTIVES.get("supcon").needs == ("labels",) and OBJECTIVES.get("simclr").needs == ()


def test_register_objective_refuses_a_second_class_and_a_mismatched_name():
    class Twin(Objective):
        pass

    with pytest.raises(ValueError, match="registered twice"):
        register_objective("simclr")(Twin)

    class Named(Objective):
        name = "a"

    with pytest.raises(ValueError, match="registers as 'b'"):
        register_objective("b")(Named)
    assert "b" not in OBJECTIVES

    class Unprovided(Objective):
        needs = ("labels", "widget")

    with pytest.raises(ValueError, match=r"needs \['widget'\] but does not override provide"):
        register_objective("c")(Unprovided)
    assert "c" not in OBJECTIVES


def _old_pretrain_cosine_momentum(step: int, max_steps: int, base: float, final: float = 1.0):
    """pretrain/_ema.py's copy before the merge (kept here to prove nothing moved)."""
    if max_steps <= 0:
        return base
    frac = min(max(step / max_steps, 0.0), 1.0)
    return final - (final - base) * (math.cos(math.pi * frac) + 1.0) / 2.0


@pytest.mark.parametrize("total", [1, 3, 7, 100, 1250])
@pytest.mark.parametrize("base, final", [(0.99, 1.0), (0.996, 1.0), (0.9, 0.999)])
def test_one_cosine_momentum_gives_the_pretrain_numbers_bit_for_bit(total, base, final):
    from fmlab.pretrain import _ema

    assert _ema.cosine_momentum is cosine_momentum  # MoCo and DINO use the engine's copy
    for step in [-1, *range(total + 2)]:
        assert cosine_momentum(step, total, base, final) == \
            _old_pretrain_cosine_momentum(step, total, base, final)


def test_cosine_momentum_without_a_run_length_keeps_the_base():
    """total <= 0: the engine's copy returned ``final`` (1.0: a frozen average), pretrain's
    ``base``; the one copy keeps ``base`` so an EMA never stops silently."""
    assert cosine_momentum(5, 0, 0.99) == 0.99
    assert cosine_momentum(0, -3, 0.9, 0.999) == 0.9
