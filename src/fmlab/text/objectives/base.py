"""The text-objective contract: ``loss, logs = objective(batch)`` on token-id batches.

A text objective is an ``nn.Module`` that builds and owns its HF model(s) from the run's tokenizer
and a size dict (``fmlab.text.models``), so one config line (``objective.name``) picks both the
maths and the architecture it needs. The engine trains it like any other objective; the run
then calls :meth:`TextObjective.save_pretrained`, which writes ``RUN_DIR/model`` (the model WITH
its pre-training head plus the tokenizer) for plain ``transformers`` to load.

Batch (from ``fmlab.text`` packing): ``input_ids`` (B, L) int64, optional ``attention_mask``
(1 = real token) and, for objectives whose :meth:`unit_spec` is not None, ``units`` (B, L):
for every token the position of the first token of its masking unit (a word, phrase or
entity), so ``rand.gather(1, units)`` draws one number per unit.

Why a registry of its own (not ``fmlab.pretrain.OBJECTIVES``): image objectives declare image
transforms and backbones that ``fmlab pretrain`` builds; text objectives declare a tokenizer
and an architecture that ``fmlab text pretrain`` builds. Random draws use the global torch RNG
(the engine re-seeds it every step, so a resumed run draws the same masks) unless a
``generator`` is passed (tests).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor, nn

from fmlab.errors import DataError
from fmlab.registry import Registry

__all__ = ["TEXT_OBJECTIVES", "TextObjective", "UnitSpec", "register_text_objective",
           "require_ids"]


@dataclass(frozen=True)
class UnitSpec:
    """Which masking units the data must supply in ``batch["units"]``.

    Attributes:
        kind: ``word`` (whole-word masking: a word's sub-word tokens form one unit) or
            ``knowledge`` (ERNIE: entities and phrases form one unit, other words as ``word``).
        terms: user phrases/entities (matched case-insensitively on word boundaries).
        markers: ChemProt's ``<< ... >>`` / ``[[ ... ]]`` entity markers delimit entities.
        heuristic: runs of capitalised words and simple noun phrases (see
            :mod:`fmlab.text.units`) are phrases.
    """

    kind: str = "word"
    terms: tuple[str, ...] = ()
    markers: bool = False
    heuristic: bool = False


def require_ids(batch: Mapping[str, Any], who: str) -> tuple[Tensor, Tensor]:
    """``(input_ids, attention_mask)`` of a batch; the mask defaults to all ones.

    Examples:
        >>> ids, am = require_ids({"input_ids": torch.ones(2, 3, dtype=torch.long)}, "mlm")
        >>> am.tolist()
        [[1, 1, 1], [1, 1, 1]]
    """
    if "input_ids" not in batch:
        raise DataError(f"{who} needs batch['input_ids']; batch has {sorted(batch)}")
    ids = batch["input_ids"]
    am = batch.get("attention_mask")
    return ids, (torch.ones_like(ids) if am is None else am)


class TextObjective(nn.Module):
    """Base class: owns ``model`` (the HF model saved as ``RUN_DIR/model``).

    Attributes:
        name: registry name (set by :func:`register_text_objective`).
        arch: the architecture :func:`fmlab.text.models.build_model` builds for it.
        tokenizer_kind: the tokenizer kind it expects when the run trains one.
        filled_by_run: constructor parameters that are never config keys.
    """

    name: ClassVar[str] = "text_objective"
    arch: ClassVar[str] = "bert"
    tokenizer_kind: ClassVar[str] = "wordpiece"
    filled_by_run: ClassVar[tuple[str, ...]] = ("tokenizer", "size")
    model: nn.Module

    def unit_spec(self) -> UnitSpec | None:
        """The masking units the data must supply (None: none needed)."""
        return None

    def extra_positions(self) -> int:
        """Tokens the objective adds to a packed block (e.g. a UL2 mode token)."""
        return 0

    def forward(self, batch: Mapping[str, Any]) -> tuple[Tensor, dict[str, Any]]:
        raise NotImplementedError

    def save_pretrained(self, run_dir: str | Path, tokenizer: Any) -> dict[str, str]:
        """Write ``run_dir/model`` (``save_pretrained`` of the model and the tokenizer).

        Returns:
            ``{"model": path}`` (subclasses add e.g. ``generator``).
        """
        out = Path(run_dir) / "model"
        self.model.save_pretrained(str(out))
        tokenizer.save_pretrained(str(out))
        return {"model": str(out)}


ObjT = TypeVar("ObjT", bound=type[TextObjective])

#: every registered text pre-training objective, by name
TEXT_OBJECTIVES: Registry[type[TextObjective]] = Registry("text objective")


def register_text_objective(name: str) -> Callable[[ObjT], ObjT]:
    """Class decorator: register a :class:`TextObjective` under ``name``.

    Examples:
        >>> @register_text_objective("toy_text_doctest")
        ... class Toy(TextObjective):
        ...     pass
        >>> TEXT_OBJECTIVES.get("toy_text_doctest").name
        'toy_text_doctest'
        >>> _ = TEXT_OBJECTIVES.remove("toy_text_doctest")
    """
    def deco(cls: ObjT) -> ObjT:
        TEXT_OBJECTIVES.register(name)(cls)
        cls.name = name
        return cls

    return deco
