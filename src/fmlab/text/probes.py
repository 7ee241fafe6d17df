"""Held-out probes of what a pre-training objective taught, for the UL2 and ERNIE studies.

* :func:`infill_loss` — masked-span infilling: held-out blocks corrupted with T5 span corruption
  (seeded, the same spans for every model), cross-entropy of the model's predictions of the
  dropped tokens (sentinels and ``</s>`` not scored). Encoder-decoders only.
* :func:`continuation_loss` — continuation: the first ``prefix_frac`` of each block is the
  context, the loss is over the rest. A T5 reads the prefix in its encoder and predicts the
  suffix in its decoder (UL2's S-denoiser / prefix LM); a decoder-only model reads the whole
  block and is scored on the suffix positions only, so both score exactly the same tokens.
* :func:`token_cloze` — the control for the entity cloze: 15 % of the tokens of held-out blocks
  (seeded) replaced by [MASK] one by one at random, accuracy of restoring them.
* :func:`entity_cloze` — ERNIE's reduced claim: every entity of a text (ChemProt's ``<< >>`` /
  ``[[ ]]`` spans, or user terms) is masked whole and the masked LM must restore it; token and
  whole-entity accuracy.
* :func:`term_cloze` — EntiGraph's closed-book probes: a held-out sentence with every mention of
  one term masked at once; whole-term and token accuracy and the NLL of the masked tokens.

A mode token (UL2's ``[NLU]`` / ``[S2S]``) can be prepended to the encoder input, as UL2 does at
inference. All probes run in eval mode without gradient and are deterministic for a seed.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["continuation_loss", "entity_cloze", "infill_loss", "term_choice", "term_cloze",
           "token_cloze"]


def _mode(tokenizer: Any, mode_token: str | None) -> list[int]:
    return [] if mode_token is None else [int(tokenizer.convert_tokens_to_ids(mode_token))]


@torch.no_grad()
def infill_loss(model: Any, tokenizer: Any, blocks: Tensor, *, density: float = 0.15,
                mean_span: float = 3.0, seed: int = 0, batch: int = 32,
                mode_token: str | None = None) -> dict[str, float]:
    """Mean cross-entropy and accuracy on the dropped tokens of span-corrupted blocks.

    Args:
        model: a ``T5ForConditionalGeneration``.
        tokenizer: its tokenizer (sentinels, eos, pad).
        blocks: (N, L) held-out token blocks.
        density: corruption rate.
        mean_span: mean span length.
        seed: seeds the spans (identical across models).
        batch: blocks per forward.
        mode_token: prepended to the encoder input (e.g. ``[NLU]`` for a UL2 model).

    Returns:
        ``{"loss", "ppl", "acc", "tokens"}``.
    """
    from fmlab.text.objectives.span import noise_mask, pad_pairs, sentinel_ids, span_corrupt

    model.eval()
    sent, eos, pad = sentinel_ids(tokenizer), tokenizer.eos_token_id, tokenizer.pad_token_id
    g = torch.Generator().manual_seed(seed)
    pairs = []
    for row in blocks:
        inp, tgt = span_corrupt(row, noise_mask(len(row), density, mean_span, g), sent, eos)
        pairs.append((_mode(tokenizer, mode_token) + inp, tgt))
    special = torch.tensor([*sent, eos])
    total, right, n = 0.0, 0, 0
    for i in range(0, len(pairs), batch):
        b = pad_pairs(pairs[i:i + batch], pad)
        logits = model(**b).logits.float()
        scored = (b["labels"] != -100) & ~torch.isin(b["labels"], special)
        total += F.cross_entropy(logits[scored], b["labels"][scored], reduction="sum").item()
        right += int((logits[scored].argmax(-1) == b["labels"][scored]).sum())
        n += int(scored.sum())
    loss = total / n
    return {"loss": loss, "ppl": float(torch.tensor(loss).exp()), "acc": right / n, "tokens": n}


@torch.no_grad()
def continuation_loss(model: Any, tokenizer: Any, blocks: Tensor, *, prefix_frac: float = 0.5,
                      batch: int = 32, mode_token: str | None = None) -> dict[str, float]:
    """Mean cross-entropy of each block's suffix given its prefix.

    Args:
        model: a ``T5ForConditionalGeneration`` or a decoder-only LM (``GPT2LMHeadModel``).
        tokenizer: its tokenizer.
        blocks: (N, L) held-out token blocks.
        prefix_frac: share of each block given as context.
        batch: blocks per forward.
        mode_token: prepended to a T5's encoder input (``[S2S]`` for a UL2 model).

    Returns:
        ``{"loss", "ppl", "tokens"}`` over the suffix tokens.
    """
    model.eval()
    cut = max(1, min(blocks.shape[1] - 1, round(blocks.shape[1] * prefix_frac)))
    seq2seq = bool(getattr(model.config, "is_encoder_decoder", False))
    total, n = 0.0, 0
    for i in range(0, len(blocks), batch):
        x = blocks[i:i + batch]
        if seq2seq:
            mode = torch.tensor(_mode(tokenizer, mode_token), dtype=torch.long).expand(len(x), -1)
            eos = torch.full((len(x), 1), tokenizer.eos_token_id, dtype=torch.long)
            enc = torch.cat([mode, x[:, :cut], eos], dim=1)
            labels = x[:, cut:].contiguous()
            logits = model(input_ids=enc, labels=labels).logits.float()
        else:
            logits = model(input_ids=x).logits.float()[:, cut - 1:-1]
            labels = x[:, cut:]
        total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                 reduction="sum").item()
        n += labels.numel()
    loss = total / n
    return {"loss": loss, "ppl": float(torch.tensor(loss).exp()), "tokens": n}


@torch.no_grad()
def entity_cloze(model: Any, tokenizer: Any, texts: list[str], *, markers: bool = True,
                 terms: tuple[str, ...] = (), max_length: int = 128,
                 batch: int = 64) -> dict[str, float]:
    """Mask each entity of each text whole and score the masked LM's restoration.

    Args:
        model: a masked LM (``BertForMaskedLM``).
        tokenizer: its tokenizer.
        texts: held-out texts.
        markers: entities are ChemProt's marked spans.
        terms: and / or these phrases.
        max_length: texts are truncated to this many tokens (entities past it are skipped).
        batch: masked copies per forward.

    Returns:
        ``{"token_acc", "entity_acc", "entities", "tokens"}``.
    """
    from fmlab.text.units import entity_spans

    model.eval()
    copies: list[tuple[list[int], list[int]]] = []  # (input ids, entity token positions)
    for text in texts:
        enc = tokenizer(text, return_offsets_mapping=True, truncation=True, max_length=max_length)
        ids, offs = enc["input_ids"], enc["offset_mapping"]
        for a, b in entity_spans(text, terms, markers):
            pos = [i for i, (s, e) in enumerate(offs) if e > s and a <= s < b]
            if pos:
                copies.append((ids, pos))
    tok_right = ent_right = n_tok = 0
    for i in range(0, len(copies), batch):
        chunk = copies[i:i + batch]
        L = max(len(ids) for ids, _ in chunk)
        x = torch.full((len(chunk), L), tokenizer.pad_token_id, dtype=torch.long)
        am = torch.zeros_like(x)
        for r, (ids, _) in enumerate(chunk):
            x[r, :len(ids)] = torch.tensor(ids)
            am[r, :len(ids)] = 1
        target = x.clone()
        for r, (_, pos) in enumerate(chunk):
            x[r, pos] = tokenizer.mask_token_id
        pred = model(input_ids=x, attention_mask=am).logits.argmax(-1)
        for r, (_, pos) in enumerate(chunk):
            ok = pred[r, pos] == target[r, pos]
            tok_right += int(ok.sum())
            ent_right += int(ok.all())
            n_tok += len(pos)
    return {"token_acc": tok_right / max(n_tok, 1), "entity_acc": ent_right / max(len(copies), 1),
            "entities": len(copies), "tokens": n_tok}


@torch.no_grad()
def token_cloze(model: Any, tokenizer: Any, blocks: Tensor, *, prob: float = 0.15, seed: int = 0,
                batch: int = 32) -> dict[str, float]:
    """Accuracy of a masked LM on randomly chosen single tokens (all shown as [MASK]).

    Args:
        model: a masked LM.
        tokenizer: its tokenizer.
        blocks: (N, L) held-out token blocks.
        prob: share of (non-special) tokens masked.
        seed: seeds the choice (identical across models).
        batch: blocks per forward.

    Returns:
        ``{"token_acc", "tokens"}``.
    """
    from fmlab.text.models import special_ids
    from fmlab.text.objectives.mlm import choose_units

    model.eval()
    g = torch.Generator().manual_seed(seed)
    chosen = choose_units(blocks, torch.tensor(special_ids(tokenizer)), prob, None, g)
    right = 0
    for i in range(0, len(blocks), batch):
        x, c = blocks[i:i + batch], chosen[i:i + batch]
        pred = model(input_ids=x.masked_fill(c, tokenizer.mask_token_id)).logits.argmax(-1)
        right += int((pred[c] == x[c]).sum())
    n = int(chosen.sum())
    return {"token_acc": right / max(n, 1), "tokens": n}


@torch.no_grad()
def term_cloze(model: Any, tokenizer: Any, items: list[tuple[str, str]], *, context: bool = True,
               max_length: int = 128, batch: int = 64) -> dict[str, float]:
    """Closed-book cloze: in each ``(sentence, term)`` every mention of ``term`` is masked at
    once (so a second mention cannot be copied) and the masked LM must restore it.

    Args:
        model: a masked LM.
        tokenizer: its fast tokenizer (offsets).
        items: held-out sentences and the term to blank in each (case-insensitive, whole words).
        context: False masks every non-special token (the term's tokens are still the ones
            scored): the model's prior alone, the control for :func:`term_choice`'s.
        max_length: sentences are truncated to this many tokens; an item whose term falls past
            it is skipped (counted in ``skipped``).
        batch: sentences per forward.

    Returns:
        ``{"entity_acc"`` (all masked tokens right), ``"token_acc"``, ``"nll"`` (mean negative
        log-likelihood per masked token), ``"probes"``, ``"tokens"``, ``"skipped"}``.
    """
    from fmlab.text.units import entity_spans

    from fmlab.text.models import special_ids

    model.eval()
    specials = set(special_ids(tokenizer))
    rows: list[tuple[list[int], list[int]]] = []
    skipped = 0
    for sentence, term in items:
        enc = tokenizer(sentence, return_offsets_mapping=True, truncation=True, max_length=max_length)
        spans = entity_spans(sentence, (term,))
        pos = [i for i, (s, e) in enumerate(enc["offset_mapping"])
               if e > s and any(a <= s < b for a, b in spans)]
        if pos:
            rows.append((enc["input_ids"], pos))
        else:
            skipped += 1
    ent = tok = 0
    nll = 0.0
    n_tok = 0
    for i in range(0, len(rows), batch):
        chunk = rows[i:i + batch]
        L = max(len(ids) for ids, _ in chunk)
        x = torch.full((len(chunk), L), tokenizer.pad_token_id, dtype=torch.long)
        am = torch.zeros_like(x)
        for r, (ids, _) in enumerate(chunk):
            x[r, :len(ids)] = torch.tensor(ids)
            am[r, :len(ids)] = 1
        target = x.clone()
        for r, (ids, pos) in enumerate(chunk):
            x[r, pos if context else [i for i, t in enumerate(ids) if t not in specials]] = \
                tokenizer.mask_token_id
        logp = model(input_ids=x, attention_mask=am).logits.log_softmax(-1)
        for r, (_, pos) in enumerate(chunk):
            t = target[r, pos]
            ok = logp[r, pos].argmax(-1) == t
            tok += int(ok.sum())
            ent += int(ok.all())
            nll -= float(logp[r, pos].gather(-1, t[:, None]).sum())
            n_tok += len(pos)
    return {"entity_acc": ent / max(len(rows), 1), "token_acc": tok / max(n_tok, 1),
            "nll": nll / max(n_tok, 1), "probes": len(rows), "tokens": n_tok, "skipped": skipped}


@torch.no_grad()
def term_choice(model: Any, tokenizer: Any, items: list[tuple[str, str]], candidates: list[str], *,
                context: bool = True, max_length: int = 128, batch: int = 64) -> dict[str, float]:
    """Closed-book multiple choice: every mention of the term is masked (as :func:`term_cloze`) and
    the term must score highest among the ``candidates`` with as many pieces, each scored by the
    summed log-probability of its pieces at the first mention's positions.

    With ``context=False`` every non-special token is masked too: the model then chooses from its
    prior alone (term frequencies, length), the control that tells knowledge from frequency.

    Returns:
        ``{"choice_acc", "chance"`` (mean 1 / candidates), ``"probes"``, ``"skipped"}``.
    """
    from fmlab.text.models import special_ids
    from fmlab.text.units import entity_spans

    model.eval()
    cand = {c: tokenizer(c, add_special_tokens=False)["input_ids"] for c in dict.fromkeys(candidates)}
    specials = set(special_ids(tokenizer))
    rows, skipped = [], 0
    for sentence, term in items:
        enc = tokenizer(sentence, return_offsets_mapping=True, truncation=True, max_length=max_length)
        ids, offs = enc["input_ids"], enc["offset_mapping"]
        spans = entity_spans(sentence, (term,))
        first = [i for i, (s, e) in enumerate(offs) if e > s and spans and spans[0][0] <= s < spans[0][1]]
        group = [c for c, p in cand.items() if len(p) == len(first)]
        if not first or [ids[i] for i in first] != cand.get(term.lower(), cand.get(term)) or len(group) < 2:
            skipped += 1
            continue
        hide = [i for i, (s, e) in enumerate(offs) if e > s and any(a <= s < b for a, b in spans)]
        if not context:
            hide = [i for i, t in enumerate(ids) if t not in specials]
        rows.append((ids, hide, first, group, term.lower() if term.lower() in cand else term))
    right, chance = 0, 0.0
    for i in range(0, len(rows), batch):
        chunk = rows[i:i + batch]
        L = max(len(r[0]) for r in chunk)
        x = torch.full((len(chunk), L), tokenizer.pad_token_id, dtype=torch.long)
        am = torch.zeros_like(x)
        for r, (ids, hide, *_) in enumerate(chunk):
            x[r, :len(ids)] = torch.tensor(ids)
            x[r, hide] = tokenizer.mask_token_id
            am[r, :len(ids)] = 1
        logp = model(input_ids=x, attention_mask=am).logits.log_softmax(-1)
        for r, (_, _, first, group, term) in enumerate(chunk):
            lp = logp[r, first]  # (pieces, vocab)
            scores = {c: float(lp[torch.arange(len(first)), torch.tensor(cand[c])].sum()) for c in group}
            best = max(scores.values())
            right += int(scores[term] == best and sum(v == best for v in scores.values()) == 1)
            chance += 1.0 / len(group)
    n = max(len(rows), 1)
    return {"choice_acc": right / n, "chance": chance / n, "probes": len(rows), "skipped": skipped}
