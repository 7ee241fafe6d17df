"""Text towers that expose their insides (token embeddings, blocks) to training code.

:mod:`fmlab.models.text` gives ``encode(list[str])``; training needs more: tokenising once,
encoding from token *embeddings* (CoOp inserts learnt context vectors there), and an ordered list
of blocks for LiT-style locking. The open_clip tower registers only the text parts of the CLIP
model, so an :class:`~fmlab.multimodal.model.ImageTextModel` built from one open_clip model holds
each weight exactly once (the image side holds ``visual``), which safetensors requires.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from fmlab.errors import ModelError



def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``hidden`` (n, L, D) over the positions where ``mask`` (n, L) is set: MiniLM's
    sentence pooling (sentence-transformers' recipe), also used by the token-level objectives so
    their sentence embedding is exactly the tower's.

    Examples:
        >>> masked_mean(torch.tensor([[[1.0], [3.0], [9.0]]]), torch.tensor([[1, 1, 0]])).tolist()
        [[2.0]]
    """
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp_min(1e-9)


class TextTower(nn.Module):
    """``tokenize(texts) -> dict``; ``forward(**tokens) -> (n, feature_dim)``; for prompts:
    ``token_embedding``, ``prompt_plan(texts)`` and ``forward_embeds(embeds, plan)``."""

    name: str
    feature_dim: int
    weights_sha256: str | None = None

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:  # pragma: no cover
        raise NotImplementedError

    def groups(self) -> list[list[nn.Parameter]]:  # pragma: no cover
        """Parameter groups bottom-up (embeddings, blocks..., final norm/projection)."""
        raise NotImplementedError

    def encode(self, texts: list[str]) -> torch.Tensor:
        device = next(self.parameters()).device
        return self(**{k: v.to(device) for k, v in self.tokenize(texts).items()})

    def token_states(self, **tokens: torch.Tensor) -> torch.Tensor:
        """Per-token features ``(n, L, feature_dim)`` (token-level objectives: LightCLIP, PLIP)."""
        raise ModelError(f"text tower {self.name} gives no per-token features; use text:minilm")


class MiniLMTower(TextTower):
    """BERT-style MiniLM with masked mean pooling (sentence-transformers' recipe)."""

    def __init__(self, encoder, max_length: int = 32) -> None:
        super().__init__()
        self.name = encoder.name
        self.model = encoder.model
        self.tokenizer = encoder.tokenizer
        self.feature_dim = int(encoder.feature_dim)
        self.weights_sha256 = encoder.weights_sha256
        self.max_length = int(max_length)
        # mean pooling never reads the pooler; a trainable unused parameter breaks DDP
        pooler = getattr(self.model, "pooler", None)
        if pooler is not None:
            pooler.requires_grad_(False)

    @property
    def token_embedding(self) -> nn.Embedding:
        return self.model.embeddings.word_embeddings

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        tok = self.tokenizer(list(texts), padding=True, truncation=True,
                             max_length=self.max_length, return_tensors="pt")
        return {"input_ids": tok["input_ids"], "attention_mask": tok["attention_mask"]}

    def token_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The last hidden states ``(n, L, feature_dim)``; ``forward`` is their masked mean."""
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return masked_mean(self.token_states(input_ids, attention_mask), attention_mask)

    def prompt_plan(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids (n, L) without truncation to ``max_length`` and each row's end position."""
        tok = self.tokenizer(list(texts), padding=True, return_tensors="pt")
        ids, mask = tok["input_ids"], tok["attention_mask"]
        return ids, mask.sum(1) - 1  # index of [SEP]

    def forward_embeds(self, embeds: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
        """Encode token embeddings (n, L, D) whose row i is valid up to ``end[i]`` inclusive."""
        pos = torch.arange(embeds.shape[1], device=embeds.device)
        mask = (pos.unsqueeze(0) <= end.to(embeds.device).unsqueeze(1)).long()
        out = self.model(inputs_embeds=embeds, attention_mask=mask)
        return masked_mean(out.last_hidden_state, mask)

    def groups(self) -> list[list[nn.Parameter]]:
        emb = [p for p in self.model.embeddings.parameters()]
        return [emb] + [list(layer.parameters()) for layer in self.model.encoder.layer]


class OpenClipTower(TextTower):
    """The text half of an open_clip ``CLIP`` model (shares its modules; no ``visual``)."""

    def __init__(self, name: str, model: nn.Module, tokenizer) -> None:
        super().__init__()
        for attr in ("token_embedding", "positional_embedding", "transformer", "ln_final"):
            if not hasattr(model, attr):
                raise ModelError(f"{name}: open_clip model {type(model).__name__} has no {attr}; "
                                 "only CLIP-style text towers are supported")
        self.name = name
        self.token_embedding = model.token_embedding
        self.positional_embedding = model.positional_embedding
        self.transformer = model.transformer
        self.ln_final = model.ln_final
        self.text_projection = model.text_projection
        self.register_buffer("attn_mask", model.attn_mask, persistent=False)
        self.pool_type = getattr(model, "text_pool_type", "argmax")
        self.eos_id = getattr(model, "text_eos_id", None)
        self.tokenizer = tokenizer
        self.context_length = int(self.positional_embedding.shape[0])
        tp = self.text_projection
        self.feature_dim = int(tp.shape[1] if isinstance(tp, torch.Tensor)
                               else tp.out_features if tp is not None else self.ln_final.normalized_shape[0])

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return {"text": self.tokenizer(list(texts))}

    def _end_index(self, text: torch.Tensor) -> torch.Tensor:
        if self.pool_type == "eos" and self.eos_id is not None:
            return (text == self.eos_id).int().argmax(-1)
        return text.argmax(-1)

    def _encode(self, x: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
        x = x + self.positional_embedding[: x.shape[1]].to(x.dtype)
        mask = self.attn_mask
        if mask is not None:
            mask = mask[: x.shape[1], : x.shape[1]]
        x = self.transformer(x, attn_mask=mask)
        x = self.ln_final(x)
        if self.pool_type == "first":
            x = x[:, 0]
        elif self.pool_type == "last":
            x = x[:, -1]
        else:
            x = x[torch.arange(x.shape[0], device=x.device), end.to(x.device)]
        tp = self.text_projection
        if isinstance(tp, nn.Linear):
            return tp(x)
        return x @ tp if tp is not None else x

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        return self._encode(self.token_embedding(text), self._end_index(text))

    def prompt_plan(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        text = self.tokenizer(list(texts))
        return text, self._end_index(text)

    def forward_embeds(self, embeds: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
        if embeds.shape[1] > self.context_length:
            if int(end.max()) >= self.context_length:
                raise ModelError(f"{self.name}: prompt of {int(end.max()) + 1} tokens exceeds the "
                                 f"context length {self.context_length}; use fewer context vectors")
            embeds = embeds[:, : self.context_length]
        return self._encode(embeds, end)

    def groups(self) -> list[list[nn.Parameter]]:
        emb = [*self.token_embedding.parameters(), self.positional_embedding]
        blocks = [list(b.parameters()) for b in self.transformer.resblocks]
        top = list(self.ln_final.parameters())
        if isinstance(self.text_projection, nn.Parameter):
            top.append(self.text_projection)
        elif isinstance(self.text_projection, nn.Module):
            top += list(self.text_projection.parameters())
        return [emb, *blocks, top]


def text_tower(name: str, weights=None, max_length: int = 32) -> TextTower:
    """``text:minilm`` or ``open_clip:<arch>[:<tag>]`` as a trainable :class:`TextTower`."""
    from fmlab.models.text import MiniLMTextEncoder, OpenClipTextEncoder, create_text_encoder

    enc = create_text_encoder(name, weights)
    if isinstance(enc, MiniLMTextEncoder):
        return MiniLMTower(enc, max_length)
    if isinstance(enc, OpenClipTextEncoder):
        tower = OpenClipTower(enc.name, enc.model, enc.tokenizer)
        tower.weights_sha256 = enc.weights_sha256
        return tower
    raise ModelError(f"text encoder {name!r} has no trainable tower in fmlab.multimodal")
