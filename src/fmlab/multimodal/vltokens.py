"""Token-level pieces shared by the LightCLIP and PLIP objectives.

* :class:`CaptionTokens` — every training caption tokenised once (ids, masks, which tokens belong
  to attribute words and to colour phrases); with the text tower locked whole, its last hidden
  states are computed once at the start of training (the tower never changes, so this equals a
  per-step pass) and the pooled caption feature is their masked mean, exactly the tower's output.
* :class:`FusedMaskedLM` — a short trainable transformer that predicts masked caption tokens from
  the rest of the caption *and* the unmasked image embedding (a prefix token, also added to the
  masked positions): LightCLIP's fused MLM and PLIP's image-guided attribute prediction. It is
  training-only, so retrieval and zero-shot cost what a plain CLIP costs.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F

from fmlab.errors import ModelError


def _word_masks(enc, captions: list[str], attribute_words: set[str],
                phrase_words: set[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(attribute, phrase) token masks: tokens of an attribute word; tokens of a phrase word
    (e.g. a colour) and of the word after it ("red 7")."""
    n, length = len(captions), len(enc["input_ids"][0])
    attr = torch.zeros(n, length, dtype=torch.bool)
    phrase = torch.zeros(n, length, dtype=torch.bool)
    for b, text in enumerate(captions):
        wids = enc.word_ids(b)
        words = {w: text[s.start:s.end].lower() for w in set(wids) - {None}
                 if (s := enc.word_to_chars(b, w)) is not None}
        for t, w in enumerate(wids):
            if w is None:
                continue
            attr[b, t] = words.get(w) in attribute_words
            phrase[b, t] = words.get(w) in phrase_words or words.get(w - 1) in phrase_words
    return attr, phrase


class CaptionTokens(nn.Module):
    """The training captions as token tables, and their text-tower features.

    Args:
        tower: a text tower with ``tokenizer`` (a fast Hugging Face tokenizer), ``max_length``
            and ``token_states`` (:class:`~fmlab.multimodal.towers.MiniLMTower`).
        captions: every caption a batch can point at (``caption_ids`` index them).
        attribute_words: words whose tokens :attr:`attr` marks (PLIP masks them).
        phrase_words: words whose tokens, and the next word's, :attr:`phrase` marks.

    Attributes:
        ids, mask: ``(N, L)`` token ids and attention mask; ``content``: mask without special
        tokens; ``attr``/``phrase``: the word masks above; ``vocab``: the sorted token ids that
        occur in the captions' content (the MLM's output classes); ``local``: token id → its
        index in ``vocab`` (-1 elsewhere).
    """

    def __init__(self, tower: nn.Module, captions: list[str], attribute_words: Iterable[str] = (),
                 phrase_words: Iterable[str] = ()) -> None:
        super().__init__()
        tok = getattr(tower, "tokenizer", None)
        if tok is None or not getattr(tok, "is_fast", False) or not hasattr(tower, "max_length"):
            raise ModelError(f"text tower {getattr(tower, 'name', '?')} has no fast tokenizer; "
                             "token-level objectives need text:minilm")
        enc = tok(list(captions), padding=True, truncation=True, max_length=tower.max_length,
                  return_special_tokens_mask=True)
        ids = torch.tensor(enc["input_ids"], dtype=torch.int64)
        mask = torch.tensor(enc["attention_mask"], dtype=torch.int64)
        content = mask.bool() & ~torch.tensor(enc["special_tokens_mask"], dtype=torch.bool)
        attr, phrase = _word_masks(enc, list(captions), {w.lower() for w in attribute_words},
                                   {w.lower() for w in phrase_words})
        vocab = torch.unique(ids[content])
        local = torch.full((int(ids.max()) + 1,), -1, dtype=torch.int64)
        local[vocab] = torch.arange(len(vocab))
        for name, t in (("ids", ids), ("mask", mask), ("content", content), ("attr", attr),
                        ("phrase", phrase), ("vocab", vocab), ("local", local)):
            self.register_buffer(name, t, persistent=False)
        self.register_buffer("hidden_cache", torch.zeros(0), persistent=False)

    @torch.no_grad()
    def fill_cache(self, tower: nn.Module, batch_size: int = 256) -> None:
        """Compute every caption's last hidden states once (only valid for a locked tower)."""
        was = tower.training
        tower.eval()
        rows = [tower.token_states(self.ids[i:i + batch_size], self.mask[i:i + batch_size]).float()
                for i in range(0, len(self.ids), batch_size)]
        tower.train(was)
        self.hidden_cache = torch.cat(rows)

    def states(self, tower: nn.Module, rows: torch.Tensor) -> torch.Tensor:
        """Hidden states ``(B, L, D)`` of captions ``rows``: from the cache, else a tower pass."""
        rows = rows.to(self.ids.device)
        if self.hidden_cache.numel():
            return self.hidden_cache[rows]
        return tower.token_states(self.ids[rows], self.mask[rows])


class FusedMaskedLM(nn.Module):
    """Predict masked caption tokens from the other tokens and the image embedding.

    Input token embeddings are the text tower's own word embeddings (``token_embedding``, rows of
    the captions' vocabulary), projected to ``width``, plus learnt positions; masked positions get
    a learnt [MASK] vector plus the projected image embedding, and the image embedding is also a
    prefix token every position attends to. Output: logits over the captions' vocabulary.

    Args:
        word_embedding: the tower's ``nn.Embedding``.
        vocab: sorted token ids to predict (:attr:`CaptionTokens.vocab`).
        image_dim: width of the image embedding fused in.
        max_len: longest caption in tokens.
        width, layers, heads: the transformer's size (1-2 small layers).
    """

    def __init__(self, word_embedding: nn.Embedding, vocab: torch.Tensor, image_dim: int, max_len: int,
                 width: int = 128, layers: int = 2, heads: int = 4) -> None:
        super().__init__()
        self.word_embedding = [word_embedding]  # not a submodule: the tower owns (and saves) it
        self.register_buffer("vocab", vocab.clone(), persistent=False)
        self.inp = nn.Linear(word_embedding.embedding_dim, width)
        self.pos = nn.Parameter(torch.zeros(max_len + 1, width))
        self.mask_token = nn.Parameter(torch.zeros(width))
        self.image_in = nn.Linear(image_dim, width)
        layer = nn.TransformerEncoderLayer(width, heads, 2 * width, dropout=0.0, batch_first=True)
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, len(vocab))
        nn.init.normal_(self.pos, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor, masked: torch.Tensor,
                image_emb: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, L, V)`` over :attr:`vocab` for ids ``(B, L)`` whose ``masked`` positions
        are hidden from the text (``mask``: attention mask)."""
        x = self.inp(self.word_embedding[0](ids))
        img = self.image_in(image_emb).unsqueeze(1)
        m = masked.unsqueeze(-1).to(x.dtype)
        x = x * (1 - m) + (self.mask_token + img) * m
        x = torch.cat([img, x], dim=1) + self.pos[: ids.shape[1] + 1]
        pad = torch.cat([torch.zeros_like(mask[:, :1]), mask], 1) == 0
        h = self.blocks(x, src_key_padding_mask=pad)
        return self.out(self.norm(h[:, 1:]))

    def loss(self, ids: torch.Tensor, mask: torch.Tensor, masked: torch.Tensor, image_emb: torch.Tensor,
             local: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean cross-entropy over the masked positions and their accuracy (0 when none)."""
        if not bool(masked.any()):
            zero = image_emb.sum() * 0.0
            return zero, zero.detach()
        logits = self(ids, mask, masked, image_emb)[masked]
        target = local[ids[masked]]
        acc = (logits.argmax(-1) == target).float().mean()
        return F.cross_entropy(logits.float(), target), acc.detach()
