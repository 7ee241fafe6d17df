"""Masked language modelling (BERT): mask 15 % of the tokens, predict them.

Of the chosen tokens 80 % become ``[MASK]``, 10 % a random non-special token, 10 % stay as they
are; the loss is the cross-entropy at the chosen positions only. With ``whole_word`` the data
supplies word units and a word's sub-word pieces are chosen together (each unit is chosen with
probability ``mask_prob``, so the expected token rate stays ``mask_prob``); the 80/10/10 split is
then drawn per token, as in BERT's whole-word-masking release. Special tokens are never chosen.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from fmlab.errors import ConfigError
from fmlab.text.objectives.base import TextObjective, UnitSpec, register_text_objective, require_ids

__all__ = ["MLM", "choose_units", "mask_tokens"]


def choose_units(ids: Tensor, special: Tensor, prob: float, units: Tensor | None = None,
                 generator: torch.Generator | None = None) -> Tensor:
    """Bool (B, L): the positions to predict; a unit is chosen whole with probability ``prob``.

    Args:
        ids: (B, L) token ids.
        special: 1-D ids never chosen (padding, [CLS], [SEP] ...).
        prob: the probability that a unit (a token when ``units`` is None) is chosen.
        units: (B, L) index of the first token of each token's unit (``arange`` when None).
        generator: for tests; default the global RNG.

    Returns:
        The chosen positions.

    Examples:
        >>> ids = torch.tensor([[5, 6, 7, 8]])
        >>> units = torch.tensor([[0, 0, 2, 2]])  # two words of two pieces each
        >>> m = choose_units(ids, torch.tensor([0]), 0.5, units, torch.Generator().manual_seed(1))
        >>> bool(m[0, 0] == m[0, 1]) and bool(m[0, 2] == m[0, 3])
        True
    """
    r = torch.rand(ids.shape, generator=generator, device=ids.device)
    if units is not None:
        r = r.gather(1, units)
    return (r < prob) & ~torch.isin(ids, special.to(ids.device))


def mask_tokens(ids: Tensor, chosen: Tensor, *, mask_id: int, allowed: Tensor,
                mask_frac: float = 0.8, random_frac: float = 0.1,
                generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Corrupt the chosen positions: ``mask_frac`` -> [MASK], ``random_frac`` -> a random
    allowed id, the rest unchanged.

    Args:
        ids: (B, L) original ids.
        chosen: bool (B, L) positions to predict (:func:`choose_units`).
        mask_id: the [MASK] id.
        allowed: 1-D ids a random replacement is drawn from (the non-special vocabulary).
        mask_frac: share of chosen tokens replaced by [MASK].
        random_frac: share replaced by a random token.
        generator: for tests; default the global RNG.

    Returns:
        ``(inputs, labels)``: labels are the original ids at chosen positions, -100 elsewhere.

    Examples:
        >>> ids = torch.arange(5, 9).view(1, 4)
        >>> chosen = torch.tensor([[True, False, True, False]])
        >>> inp, lab = mask_tokens(ids, chosen, mask_id=4, allowed=torch.arange(5, 40),
        ...                        mask_frac=1.0, random_frac=0.0)
        >>> inp.tolist(), lab.tolist()
        ([[4, 6, 4, 8]], [[5, -100, 7, -100]])
    """
    u = torch.rand(ids.shape, generator=generator, device=ids.device)
    to_mask = chosen & (u < mask_frac)
    to_rand = chosen & (u >= mask_frac) & (u < mask_frac + random_frac)
    pick = torch.randint(len(allowed), ids.shape, generator=generator, device=ids.device)
    inputs = ids.masked_fill(to_mask, mask_id)
    inputs = torch.where(to_rand, allowed.to(ids.device)[pick], inputs)
    return inputs, ids.masked_fill(~chosen, -100)


class MaskingMixin:
    """(On an ``nn.Module``.) Special / allowed id tensors and the [MASK] id of a tokenizer (MLM, ELECTRA, ERNIE)."""

    def _set_masking(self, tokenizer: Any, mask_prob: float, mask_frac: float,
                     random_frac: float) -> None:
        from fmlab.text.models import special_ids

        if not 0.0 < mask_prob < 1.0:
            raise ConfigError(f"objective.mask_prob: {mask_prob!r} must be in (0, 1)")
        if mask_frac < 0 or random_frac < 0 or mask_frac + random_frac > 1.0:
            raise ConfigError(f"objective.mask_frac + random_frac: {mask_frac} + {random_frac} "
                              f"must be fractions summing to at most 1")
        if tokenizer.mask_token_id is None:
            raise ConfigError("tokenizer: has no mask token ([MASK])")
        special = special_ids(tokenizer)
        keep = torch.ones(len(tokenizer), dtype=torch.bool)
        keep[special] = False
        self.mask_prob, self.mask_frac, self.random_frac = mask_prob, mask_frac, random_frac
        self.mask_id = int(tokenizer.mask_token_id)
        # non-persistent buffers: they follow the model to its device, stay out of checkpoints
        self.register_buffer("special", torch.tensor(special, dtype=torch.long), persistent=False)
        self.register_buffer("allowed", keep.nonzero().flatten(), persistent=False)

    def corrupt(self, ids: Tensor, units: Tensor | None,
                generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """``(inputs, labels)`` of one masking draw (see :func:`mask_tokens`)."""
        chosen = choose_units(ids, self.special, self.mask_prob, units, generator)
        return mask_tokens(ids, chosen, mask_id=self.mask_id, allowed=self.allowed,
                           mask_frac=self.mask_frac, random_frac=self.random_frac,
                           generator=generator)


def mlm_logs(logits: Tensor, labels: Tensor, loss: Tensor) -> dict[str, Tensor]:
    """Loss and accuracy at the predicted positions (for the log window)."""
    sel = labels != -100
    acc = (logits.detach().argmax(-1)[sel] == labels[sel]).float().mean() if sel.any() else \
        torch.zeros((), device=logits.device)
    return {"mlm_loss": loss.detach(), "mlm_acc": acc, "masked_frac": sel.float().mean()}


@register_text_objective("mlm")
class MLM(MaskingMixin, TextObjective):
    """BERT masked LM on a ``BertForMaskedLM``.

    Args:
        tokenizer: the run's tokenizer (filled by the run).
        size: the model size dict (filled by the run).
        mask_prob: probability that a token (or whole word) is chosen.
        mask_frac: share of chosen tokens replaced by [MASK].
        random_frac: share replaced by a random token (the rest stay unchanged).
        whole_word: choose whole words (the data supplies word units).

    Examples:
        >>> from fmlab.text.models import _toy_tokenizer
        >>> _ = torch.manual_seed(0)
        >>> obj = MLM(_toy_tokenizer(), {"hidden": 16, "layers": 1, "heads": 2})
        >>> loss, logs = obj({"input_ids": torch.randint(5, 40, (4, 12))})
        >>> loss.ndim, sorted(logs)
        (0, ['masked_frac', 'mlm_acc', 'mlm_loss'])
    """

    arch = "bert"

    def __init__(self, tokenizer: Any, size: dict[str, Any] | None = None, mask_prob: float = 0.15,
                 mask_frac: float = 0.8, random_frac: float = 0.1, whole_word: bool = False) -> None:
        super().__init__()
        from fmlab.text.models import build_model

        self._set_masking(tokenizer, mask_prob, mask_frac, random_frac)
        self.whole_word = whole_word
        self.model = build_model(self.arch, size, tokenizer)

    def unit_spec(self) -> UnitSpec | None:
        return UnitSpec("word") if self.whole_word else None

    def forward(self, batch: Mapping[str, Any]) -> tuple[Tensor, dict[str, Any]]:
        ids, am = require_ids(batch, self.name)
        inputs, labels = self.corrupt(ids, batch.get("units"))
        out = self.model(input_ids=inputs, attention_mask=am, labels=labels)
        return out.loss, mlm_logs(out.logits, labels, out.loss)
