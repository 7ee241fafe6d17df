"""Text pre-training objectives as losses: ``loss, logs = objective(batch)``.

Each objective is one file and registers itself where it is defined
(``@register_text_objective("mlm")``); this file only imports the modules. Names resolve through
``TEXT_OBJECTIVES``: ``create_text_objective("mlm", tokenizer=tok, size={...})``.
"""

from __future__ import annotations

from typing import Any

from fmlab.text.objectives.base import (
    TEXT_OBJECTIVES,
    TextObjective,
    UnitSpec,
    register_text_objective,
)
from fmlab.text.objectives.clm import CausalLM
from fmlab.text.objectives.electra import ELECTRA
from fmlab.text.objectives.ernie import ERNIE, UnifiedErnie
from fmlab.text.objectives.mlm import MLM, choose_units, mask_tokens
from fmlab.text.objectives.span import SpanCorruption, noise_mask, span_corrupt
from fmlab.text.objectives.ul2 import UL2


def create_text_objective(name: str, **kwargs: Any) -> TextObjective:
    """Build a registered text objective by name.

    Args:
        name: a registered name (``TEXT_OBJECTIVES.names()``).
        **kwargs: the class's constructor arguments (``tokenizer=`` and ``size=`` at least).

    Returns:
        The objective module (it owns its freshly initialised model).

    Examples:
        >>> from fmlab.text.models import _toy_tokenizer
        >>> obj = create_text_objective("clm", tokenizer=_toy_tokenizer(), size={"hidden": 16})
        >>> type(obj.model).__name__
        'GPT2LMHeadModel'
    """
    return TEXT_OBJECTIVES.get(name)(**kwargs)


__all__ = ["ELECTRA", "ERNIE", "MLM", "TEXT_OBJECTIVES", "UL2", "CausalLM", "SpanCorruption",
           "TextObjective", "UnifiedErnie", "UnitSpec", "choose_units", "create_text_objective",
           "mask_tokens", "noise_mask", "register_text_objective", "span_corrupt"]
