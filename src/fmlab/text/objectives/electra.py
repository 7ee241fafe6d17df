"""ELECTRA: replaced-token detection with a small MLM generator (papers.md entry 53, §3.15).

The generator G (an ``ElectraForMaskedLM`` ``generator_fraction`` as wide as D) predicts the
masked tokens; the corrupted input puts a sample x̂_t ~ softmax(G's logits / temperature) at
each masked position (drawn without gradient: sampling is not back-propagated, ELECTRA is not
adversarial); the discriminator D (``ElectraForPreTraining``) labels EVERY real position as
replaced (1) or original (0), where a sampled token equal to the original counts as original.

    L = gen_weight · L_MLM(G) + disc_weight · L_Disc(D),  gen_weight = 1, disc_weight = 50

G and D share the token, position and type embeddings (one module); G's output layer is tied to
them. Masking follows google-research/electra's ``pretrain_helpers.mask``: 15 % of the tokens,
85 % of those shown as [MASK] and 15 % left unchanged (no random replacements: the generator
supplies them). Only D transfers: ``RUN_DIR/model`` is D, ``RUN_DIR/generator`` is G.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from fmlab.errors import ConfigError
from fmlab.text.objectives.base import TextObjective, register_text_objective, require_ids
from fmlab.text.objectives.mlm import MaskingMixin

__all__ = ["ELECTRA"]


@register_text_objective("electra")
class ELECTRA(MaskingMixin, TextObjective):
    """ELECTRA generator + discriminator with shared embeddings.

    Args:
        tokenizer: the run's tokenizer (filled by the run).
        size: the discriminator's size dict (filled by the run).
        mask_prob: share of tokens the generator predicts.
        mask_frac: share of those shown as [MASK] (the rest unchanged).
        random_frac: share replaced by a random token before the generator (ELECTRA: 0).
        generator_fraction: generator width / discriminator width (paper 1/4 to 1/2).
        gen_weight: weight of the generator's MLM loss.
        disc_weight: weight of the discriminator loss (paper 50).
        temperature: sampling temperature of the generator's softmax.

    Examples:
        >>> from fmlab.text.models import _toy_tokenizer
        >>> _ = torch.manual_seed(0)
        >>> obj = ELECTRA(_toy_tokenizer(), {"hidden": 16, "layers": 1, "heads": 2})
        >>> loss, logs = obj({"input_ids": torch.randint(5, 40, (4, 12))})
        >>> obj.generator.electra.embeddings is obj.model.electra.embeddings
        True
    """

    arch = "electra"

    def __init__(self, tokenizer: Any, size: dict[str, Any] | None = None, mask_prob: float = 0.15,
                 mask_frac: float = 0.85, random_frac: float = 0.0,
                 generator_fraction: float = 0.25, gen_weight: float = 1.0,
                 disc_weight: float = 50.0, temperature: float = 1.0) -> None:
        super().__init__()
        from fmlab.text.models import build_generator, build_model

        self._set_masking(tokenizer, mask_prob, mask_frac, random_frac)
        if temperature <= 0:
            raise ConfigError(f"objective.temperature: {temperature!r} must be > 0")
        self.gen_weight, self.disc_weight, self.temperature = gen_weight, disc_weight, temperature
        self.model = build_model(self.arch, size, tokenizer)
        self.generator = build_generator(size, tokenizer, generator_fraction)
        # share the embeddings (tokens, positions, types, their LayerNorm) and tie G's output
        self.generator.electra.embeddings = self.model.electra.embeddings
        self.generator.generator_lm_head.weight = self.model.electra.embeddings.word_embeddings.weight
        never = torch.zeros(len(tokenizer), dtype=torch.bool)
        never[self.special] = True
        self.register_buffer("never_sample", never, persistent=False)

    def replace(self, ids: Tensor, am: Tensor, units: Tensor | None = None,
                generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Mask, run G, sample replacements: what D sees and its labels.

        Returns:
            ``{"masked", "labels" (G's MLM targets, -100 elsewhere), "gen_logits" (B, L, V),
            "corrupted", "disc_labels" (1.0 where corrupted != ids)}``.
        """
        masked, labels = self.corrupt(ids, units, generator)
        gen_logits = self.generator(input_ids=masked, attention_mask=am).logits
        sel = labels != -100
        with torch.no_grad():
            logits = gen_logits[sel].float() / self.temperature
            logits = logits.masked_fill(self.never_sample, float("-inf"))
            sampled = torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(-1)
        corrupted = ids.clone()
        corrupted[sel] = sampled
        return {"masked": masked, "labels": labels, "gen_logits": gen_logits,
                "corrupted": corrupted, "disc_labels": (corrupted != ids).float()}

    def forward(self, batch: Mapping[str, Any]) -> tuple[Tensor, dict[str, Any]]:
        ids, am = require_ids(batch, self.name)
        r = self.replace(ids, am, batch.get("units"))
        sel = r["labels"] != -100
        mlm = F.cross_entropy(r["gen_logits"][sel].float(), r["labels"][sel])
        d_logits = self.model(input_ids=r["corrupted"], attention_mask=am).logits
        real = am.bool()
        disc = F.binary_cross_entropy_with_logits(d_logits[real].float(), r["disc_labels"][real])
        loss = self.gen_weight * mlm + self.disc_weight * disc
        with torch.no_grad():
            pred = (d_logits[real] > 0).float()
            acc = (pred == r["disc_labels"][real]).float().mean()
            gen_acc = (r["gen_logits"][sel].argmax(-1) == r["labels"][sel]).float().mean()
        return loss, {"mlm_loss": mlm.detach(), "disc_loss": disc.detach(), "disc_acc": acc,
                      "gen_acc": gen_acc, "replaced_frac": r["disc_labels"][real].mean()}

    def save_pretrained(self, run_dir: str | Path, tokenizer: Any) -> dict[str, str]:
        """``RUN_DIR/model`` = the discriminator (what transfers), ``RUN_DIR/generator`` = G."""
        out = super().save_pretrained(run_dir, tokenizer)
        gen = Path(run_dir) / "generator"
        self.generator.save_pretrained(str(gen))
        tokenizer.save_pretrained(str(gen))
        return {**out, "generator": str(gen)}
