"""Causal language modelling (GPT): predict every next token, L = mean_t −log p(x_t | x_<t).

The model is a ``GPT2LMHeadModel``; labels are the inputs (the model shifts them), padding
positions are ignored. ``ppl`` in the logs is exp(loss) of the batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from fmlab.text.objectives.base import TextObjective, register_text_objective, require_ids

__all__ = ["CausalLM"]


@register_text_objective("clm")
class CausalLM(TextObjective):
    """Next-token prediction on a GPT-2 style decoder.

    Args:
        tokenizer: the run's tokenizer (filled by the run).
        size: the model size dict (filled by the run).

    Examples:
        >>> from fmlab.text.models import _toy_tokenizer
        >>> _ = torch.manual_seed(0)
        >>> obj = CausalLM(_toy_tokenizer(), {"hidden": 16, "layers": 1, "heads": 2})
        >>> loss, logs = obj({"input_ids": torch.randint(5, 40, (2, 8))})
        >>> abs(float(logs["ppl"]) - float(loss.detach().exp())) < 1e-4
        True
    """

    arch = "gpt"
    tokenizer_kind = "bpe"

    def __init__(self, tokenizer: Any, size: dict[str, Any] | None = None) -> None:
        super().__init__()
        from fmlab.text.models import build_model

        self.model = build_model(self.arch, size, tokenizer)

    def forward(self, batch: Mapping[str, Any]) -> tuple[Tensor, dict[str, Any]]:
        ids, am = require_ids(batch, self.name)
        labels = ids.masked_fill(am == 0, -100)
        out = self.model(input_ids=ids, attention_mask=am, labels=labels)
        return out.loss, {"lm_loss": out.loss.detach(), "ppl": torch.exp(out.loss.detach())}
