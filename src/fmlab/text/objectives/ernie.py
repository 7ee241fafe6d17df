"""ERNIE 3.0 in small (papers.md entry 23): knowledge masking on a unified NLU/NLG model.

Knowledge masking: the masking units are whole entities and phrases (found on the text by
:mod:`fmlab.text.units`: a user term list, ChemProt's ``<< >>``/``[[ ]]`` entity markers, or a
capitalised-phrase heuristic); other tokens are grouped by word. A unit is chosen whole with
probability ``mask_prob`` and its tokens corrupted 80/10/10, as in :mod:`.mlm`. ``masking:
token`` / ``word`` give the token- and word-level ablations on the same model.

Unified model: a shared BERT trunk of ``size.layers`` layers (the universal representation),
then two task-specific top stacks of ``size.task_layers`` layers each: the understanding branch
(bidirectional attention, MLM head) and the generation branch (causal attention, LM head tied to
the word embeddings). The trunk runs with the attention mask of the branch it feeds
(bidirectional for NLU, causal for NLG), as in ERNIE 3.0, so the NLG branch never sees the future.

    L = L_knowledge-MLM(NLU) + nlg_weight · L_causal-LM(NLG)

Export: the NLU path (trunk + understanding layers + MLM head) is exactly a ``BertForMaskedLM``
of ``layers + task_layers`` layers, saved as ``RUN_DIR/model`` (what fine-tuning loads); the
generation branch goes to ``RUN_DIR/nlg.safetensors`` (+ ``nlg.json``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fmlab.errors import ConfigError
from fmlab.text.objectives.base import TextObjective, UnitSpec, register_text_objective, require_ids
from fmlab.text.objectives.mlm import MaskingMixin, mlm_logs

__all__ = ["ERNIE", "UnifiedErnie", "additive_mask"]


def additive_mask(am: Tensor, causal: bool, dtype: torch.dtype) -> Tensor:
    """(B, 1, L, L) additive attention mask: 0 where a query may attend, dtype-min elsewhere.

    Examples:
        >>> m = additive_mask(torch.ones(1, 3, dtype=torch.long), causal=True, dtype=torch.float32)
        >>> (m[0, 0] == 0).long().tolist()
        [[1, 0, 0], [1, 1, 0], [1, 1, 1]]
    """
    L = am.shape[1]
    ok = am[:, None, None, :].bool().expand(-1, 1, L, L)
    if causal:
        ok = ok & torch.ones(L, L, dtype=torch.bool, device=am.device).tril()
    return torch.zeros(ok.shape, dtype=dtype, device=am.device).masked_fill(~ok, torch.finfo(dtype).min)


class UnifiedErnie(nn.Module):
    """Shared trunk + NLU branch (``nlu``, a ``BertForMaskedLM``) + NLG branch.

    Args:
        nlu: the ``BertForMaskedLM`` of ``shared + task_layers`` layers.
        shared: how many of its first layers form the shared trunk.
    """

    def __init__(self, nlu: nn.Module, shared: int) -> None:
        super().__init__()
        from transformers.models.bert.modeling_bert import BertLayer, BertOnlyMLMHead

        cfg = nlu.config
        task = cfg.num_hidden_layers - shared
        if shared < 1 or task < 1:
            raise ConfigError(f"model.size: ERNIE needs >= 1 shared and >= 1 task layer "
                              f"(got {shared} and {task})")
        self.nlu, self.shared = nlu, shared
        self.nlg_layers = nn.ModuleList(BertLayer(cfg) for _ in range(task))
        self.nlg_head = BertOnlyMLMHead(cfg)
        self.nlg_head.predictions.decoder.weight = nlu.bert.embeddings.word_embeddings.weight

    def nlg_logits(self, ids: Tensor, am: Tensor) -> Tensor:
        """(B, L, V) next-token logits of the generation branch (causal everywhere)."""
        h = self.nlu.bert.embeddings(input_ids=ids)
        mask = additive_mask(am, causal=True, dtype=h.dtype)
        for layer in [*self.nlu.bert.encoder.layer[:self.shared], *self.nlg_layers]:
            h = layer(h, attention_mask=mask)
            h = h[0] if isinstance(h, tuple) else h
        return self.nlg_head(h)


@register_text_objective("ernie")
class ERNIE(MaskingMixin, TextObjective):
    """Knowledge-masked LM (NLU branch) + causal LM (NLG branch) on a shared trunk.

    Args:
        tokenizer: the run's tokenizer (filled by the run).
        size: the size dict; ``layers`` shared, ``task_layers`` per branch (filled by the run).
        mask_prob: probability that a unit is chosen.
        mask_frac: share of chosen tokens replaced by [MASK].
        random_frac: share replaced by a random token.
        masking: ``knowledge`` (entities/phrases, else words), ``word`` or ``token``.
        terms: user phrases / entities to mask whole.
        markers: ChemProt ``<< >>`` / ``[[ ]]`` markers delimit entities.
        heuristic: capitalised runs and acronym-like words count as phrases.
        nlg_weight: weight of the generation branch's causal-LM loss (0: NLU only).

    Examples:
        >>> from fmlab.text.models import _toy_tokenizer
        >>> _ = torch.manual_seed(0)
        >>> obj = ERNIE(_toy_tokenizer(), {"hidden": 16, "layers": 1, "heads": 2})
        >>> loss, logs = obj({"input_ids": torch.randint(5, 40, (2, 10))})
        >>> sorted(logs)
        ['masked_frac', 'mlm_acc', 'mlm_loss', 'nlg_loss']
    """

    arch = "ernie"

    def __init__(self, tokenizer: Any, size: dict[str, Any] | None = None, mask_prob: float = 0.15,
                 mask_frac: float = 0.8, random_frac: float = 0.1, masking: str = "knowledge",
                 terms: list[str] | None = None, markers: bool = True, heuristic: bool = True,
                 nlg_weight: float = 1.0) -> None:
        super().__init__()
        from fmlab.text.models import _size, build_model

        if masking not in ("knowledge", "word", "token"):
            raise ConfigError(f"objective.masking: {masking!r} is not knowledge, word or token")
        if nlg_weight < 0:
            raise ConfigError(f"objective.nlg_weight: {nlg_weight!r} must be >= 0")
        self._set_masking(tokenizer, mask_prob, mask_frac, random_frac)
        self.masking, self.terms = masking, tuple(terms or ())
        self.markers, self.heuristic, self.nlg_weight = markers, heuristic, nlg_weight
        self.unified = UnifiedErnie(build_model(self.arch, size, tokenizer), _size(size)["layers"])
        self.model = self.unified.nlu

    def unit_spec(self) -> UnitSpec | None:
        if self.masking == "token":
            return None
        if self.masking == "word":
            return UnitSpec("word")
        return UnitSpec("knowledge", self.terms, self.markers, self.heuristic)

    def forward(self, batch: Mapping[str, Any]) -> tuple[Tensor, dict[str, Any]]:
        ids, am = require_ids(batch, self.name)
        inputs, labels = self.corrupt(ids, batch.get("units"))
        out = self.model(input_ids=inputs, attention_mask=am, labels=labels)
        logs = mlm_logs(out.logits, labels, out.loss)
        loss = out.loss
        if self.nlg_weight > 0:
            logits = self.unified.nlg_logits(ids, am)[:, :-1]
            target = ids[:, 1:].masked_fill(am[:, 1:] == 0, -100)
            nlg = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), target.reshape(-1))
            loss = loss + self.nlg_weight * nlg
            logs["nlg_loss"] = nlg.detach()
        return loss, logs

    def save_pretrained(self, run_dir: str | Path, tokenizer: Any) -> dict[str, str]:
        """``RUN_DIR/model`` = the NLU path; ``RUN_DIR/nlg.safetensors`` = the NLG branch."""
        from fmlab.engine.checkpoint import save_weights
        from fmlab.utils.io import write_json

        out = super().save_pretrained(run_dir, tokenizer)
        path = Path(run_dir) / "nlg.safetensors"
        branch = nn.ModuleDict({"layers": self.unified.nlg_layers, "head": self.unified.nlg_head})
        save_weights(branch, path, metadata={"writer": "fmlab.text.ernie"})
        write_json(Path(run_dir) / "nlg.json", {
            "shared_layers": self.unified.shared, "weights": path.name,
            "note": "generation branch: run RUN_DIR/model's embeddings and first shared_layers "
                    "layers with a causal mask, then these layers and head (decoder tied to the "
                    "word embeddings)"})
        return {**out, "nlg": str(path)}
