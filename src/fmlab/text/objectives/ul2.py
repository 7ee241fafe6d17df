"""UL2 mixture of denoisers (papers.md entry 22) on a T5 encoder-decoder.

Every example independently draws a denoiser family with probabilities ``(r_ratio, s_ratio,
x_ratio)``, then one of the family's settings uniformly:

* R (regular, T5-like): span corruption with (mean span μ, rate r) in {(3, 15 %), (8, 15 %)};
* X (extreme): {(3, 50 %), (8, 50 %), (64, 15 %), (64, 50 %)};
* S (sequential): prefix LM: the row is cut at a uniformly random point, the encoder reads the
  prefix and the decoder predicts the suffix.

The paradigm token of the family ([NLU] for R, [NLG] for X, [S2S] for S) is prepended to the
encoder input (mode switching), so a fine-tuned model can be told which mode to use. The paper's
mixture gives S about 20-25 % and spreads the rest over R and X (defaults 0.4 / 0.2 / 0.4).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from fmlab.errors import ConfigError
from fmlab.text.objectives.base import TextObjective, register_text_objective, require_ids
from fmlab.text.objectives.span import noise_mask, pad_pairs, sentinel_ids, seq2seq_logs, span_corrupt

__all__ = ["FAMILIES", "MODE_TOKENS", "R_SETTINGS", "UL2", "X_SETTINGS", "prefix_split"]

R_SETTINGS = ((3.0, 0.15), (8.0, 0.15))
X_SETTINGS = ((3.0, 0.5), (8.0, 0.5), (64.0, 0.15), (64.0, 0.5))
FAMILIES = ("R", "S", "X")
MODE_TOKENS = {"R": "[NLU]", "S": "[S2S]", "X": "[NLG]"}


def prefix_split(tokens: list[int], eos: int | None,
                 generator: torch.Generator | None = None) -> tuple[list[int], list[int]]:
    """S-denoiser: cut at a uniform point in [1, n-1]; (prefix, suffix), each ending with eos.

    Examples:
        >>> a, b = prefix_split([5, 6, 7, 8], eos=1, generator=torch.Generator().manual_seed(0))
        >>> a[:-1] + b[:-1]
        [5, 6, 7, 8]
    """
    if len(tokens) < 2:
        raise ConfigError(f"the prefix-LM denoiser needs rows of at least 2 tokens, got {len(tokens)}")
    cut = int(torch.randint(1, len(tokens), (1,), generator=generator))
    tail = [eos] if eos is not None else []
    return tokens[:cut] + tail, tokens[cut:] + tail


@register_text_objective("ul2")
class UL2(TextObjective):
    """Mixture of denoisers with mode tokens on a ``T5ForConditionalGeneration``.

    Args:
        tokenizer: the run's tokenizer with sentinels and [NLU] [NLG] [S2S] (filled by the run).
        size: the model size dict (filled by the run).
        r_ratio: probability of the R family.
        s_ratio: probability of the S family (prefix LM).
        x_ratio: probability of the X family.
        mode_tokens: prepend the family's paradigm token to the encoder input.

    Examples:
        >>> from fmlab.text.models import _toy_tokenizer
        >>> _ = torch.manual_seed(0)
        >>> obj = UL2(_toy_tokenizer(seq2seq=True), {"hidden": 16, "layers": 1, "heads": 2})
        >>> loss, logs = obj({"input_ids": torch.randint(20, 60, (4, 16))})
        >>> sorted(logs)
        ['frac_R', 'frac_S', 'frac_X', 's2s_loss', 'target_acc']
    """

    arch = "t5"
    tokenizer_kind = "unigram"

    def __init__(self, tokenizer: Any, size: dict[str, Any] | None = None, r_ratio: float = 0.4,
                 s_ratio: float = 0.2, x_ratio: float = 0.4, mode_tokens: bool = True) -> None:
        super().__init__()
        from fmlab.text.models import build_model

        ratios = torch.tensor([r_ratio, s_ratio, x_ratio], dtype=torch.float64)
        if (ratios < 0).any() or ratios.sum() <= 0:
            raise ConfigError(f"objective.r_ratio/s_ratio/x_ratio: {ratios.tolist()} must be "
                              f">= 0 with a positive sum")
        self.ratios = ratios / ratios.sum()
        self.mode_tokens = mode_tokens
        self.mode_ids = {}
        if mode_tokens:
            for fam, tok in MODE_TOKENS.items():
                tid = tokenizer.convert_tokens_to_ids(tok)
                if tid is None or tid == tokenizer.unk_token_id:
                    raise ConfigError(f"tokenizer: has no mode token {tok} (objective.mode_tokens)")
                self.mode_ids[fam] = int(tid)
        self.sentinels = sentinel_ids(tokenizer)
        self.eos = tokenizer.eos_token_id
        self.pad = int(tokenizer.pad_token_id)
        self.model = build_model(self.arch, size, tokenizer)

    def extra_positions(self) -> int:
        return int(self.mode_tokens)

    def make_pairs(self, ids: Tensor, am: Tensor, generator: torch.Generator | None = None
                   ) -> tuple[list[tuple[list[int], list[int]]], list[str]]:
        """Per row: draw a family and a setting, corrupt, prepend the mode token.

        Returns:
            ``(pairs, families)``: (inputs, targets) id lists and each row's family letter.
        """
        fams = torch.multinomial(self.ratios, len(ids), replacement=True, generator=generator)
        pairs, names = [], []
        for row, keep, f in zip(ids.cpu(), am.cpu().bool(), fams.tolist(), strict=True):
            toks, fam = row[keep], FAMILIES[f]
            if fam == "S":
                inp, tgt = prefix_split(toks.tolist(), self.eos, generator)
            else:
                settings = R_SETTINGS if fam == "R" else X_SETTINGS
                j = int(torch.randint(len(settings), (1,), generator=generator))
                mean_span, rate = settings[j]
                mask = noise_mask(len(toks), rate, mean_span, generator)
                inp, tgt = span_corrupt(toks, mask, self.sentinels, self.eos)
            if self.mode_tokens:
                inp = [self.mode_ids[fam], *inp]
            pairs.append((inp, tgt))
            names.append(fam)
        return pairs, names

    def forward(self, batch: Mapping[str, Any]) -> tuple[Tensor, dict[str, Any]]:
        ids, am = require_ids(batch, self.name)
        pairs, fams = self.make_pairs(ids, am)
        b = pad_pairs(pairs, self.pad, ids.device)
        out = self.model(**b)
        logs = seq2seq_logs(out.logits, b["labels"], out.loss)
        logs.update({f"frac_{f}": sum(x == f for x in fams) / len(fams) for f in FAMILIES})
        return out.loss, logs
