"""The autoregressive image-token transformer of the reduced StoryDALL-E (papers.md #48).

Sequence: [prompt tokens (P, learned); caption token (the projected sentence embedding); BOS;
code₁ … code_{N−1}] → the logits at BOS … code_{N−1} predict code₁ … code_N (N = h·w image
tokens, raster order), causal attention throughout (the prefix is visible to every token).

Story continuation adds, in every block, a **cross-attention to the source frame's tokens**
(their code embeddings + own positions), gated by tanh(g) with g initialised at 0: a pre-trained
text-to-image model retro-fitted with cross-attention computes exactly what it did before until
training opens the gate (a test checks it). The two adaptation regimes of the paper:

- full fine-tuning: every parameter trains;
- prompt-tuning: only the prompt tokens and the new cross-attention layers (and their gates)
  train — :meth:`StoryTransformer.prompt_tuning_parameters`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fmlab.errors import ConfigError, DataError
from fmlab.gan.nets.base import check_sizes

__all__ = ["StoryTransformer"]


class _Block(nn.Module):
    """Pre-norm causal self-attention, optional gated cross-attention, MLP."""

    def __init__(self, d: int, heads: int, cross: bool) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))
        self.cross: nn.MultiheadAttention | None = None
        if cross:
            self.add_cross(heads)

    def add_cross(self, heads: int) -> None:
        d = self.ln1.normalized_shape[0]
        self.ln_x = nn.LayerNorm(d)
        self.cross = nn.MultiheadAttention(d, heads, batch_first=True)
        self.gate = nn.Parameter(torch.zeros(()))

    def forward(self, h: torch.Tensor, mask: torch.Tensor, source: torch.Tensor | None) -> torch.Tensor:
        a = self.ln1(h)
        h = h + self.attn(a, a, a, attn_mask=mask, need_weights=False)[0]
        if self.cross is not None and source is not None:
            c = self.ln_x(h)
            h = h + torch.tanh(self.gate) * self.cross(c, source, source, need_weights=False)[0]
        return h + self.mlp(self.ln2(h))


class StoryTransformer(nn.Module):
    """p(codes | caption[, source frame codes]) over a codebook of ``codes`` entries.

    Args:
        codes: codebook size of the VQ-VAE.
        tokens: image tokens per frame (h·w).
        e_dim: caption embedding size.
        d: model width; ``layers`` blocks of ``heads`` heads.
        prompts: learned prompt tokens before the caption (0: none).
        cross: build the source-frame cross-attention now (else :meth:`add_cross_attention`).

    Examples:
        >>> m = StoryTransformer(codes=16, tokens=4, e_dim=6, d=16, layers=1, heads=2, prompts=2)
        >>> m(torch.zeros(3, 4, dtype=torch.long), torch.zeros(3, 6)).shape
        torch.Size([3, 4, 16])
    """

    def __init__(self, codes: int, tokens: int, e_dim: int, d: int = 128, layers: int = 4,
                 heads: int = 4, prompts: int = 4, cross: bool = False) -> None:
        super().__init__()
        codes, tokens, e_dim, d, layers, heads = check_sizes(
            "StoryTransformer", codes=codes, tokens=tokens, e_dim=e_dim, d=d, layers=layers, heads=heads)
        if d % heads:
            raise ConfigError(f"StoryTransformer: d {d} must be a multiple of heads {heads}")
        self.codes, self.tokens, self.e_dim, self.d, self.heads = codes, tokens, e_dim, d, heads
        self.tok = nn.Embedding(codes + 1, d)  # + BOS
        self.pos = nn.Parameter(torch.randn(tokens, d) * 0.02)
        self.caption = nn.Linear(e_dim, d)
        self.prompts = nn.Parameter(torch.randn(int(prompts), d) * 0.02)
        self.blocks = nn.ModuleList(_Block(d, heads, cross) for _ in range(layers))
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, codes)
        self.src_pos: nn.Parameter | None = None
        if cross:
            self.src_pos = nn.Parameter(torch.randn(tokens, d) * 0.02)

    @property
    def has_cross(self) -> bool:
        return self.src_pos is not None

    def add_cross_attention(self) -> None:
        """Retro-fit the source-frame cross-attention (gates at 0: the model's function is unchanged)."""
        if self.has_cross:
            raise ConfigError("StoryTransformer: cross-attention is already there")
        for b in self.blocks:
            b.add_cross(self.heads)
        self.src_pos = nn.Parameter(torch.randn(self.tokens, self.d) * 0.02)

    def prompt_tuning_parameters(self) -> list[nn.Parameter]:
        """What prompt-tuning trains: the prompts and the cross-attention (layers, norms, gates,
        source positions)."""
        if not self.has_cross:
            raise ConfigError("prompt-tuning trains the prompts and the cross-attention; add the "
                              "cross-attention first")
        params = [self.prompts, self.src_pos]
        for b in self.blocks:
            params += [*b.cross.parameters(), *b.ln_x.parameters(), b.gate]
        return params

    def _source(self, source: torch.Tensor | None, b: int) -> torch.Tensor | None:
        if source is None:
            return None
        if not self.has_cross:
            raise DataError("StoryTransformer: got a source frame but has no cross-attention")
        if source.shape != (b, self.tokens):
            raise DataError(f"source codes must be ({b}, {self.tokens}), got {tuple(source.shape)}")
        return self.tok(source) + self.src_pos

    def forward(self, codes: torch.Tensor, caption: torch.Tensor,
                source: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, L, codes) of tokens 1..L given tokens < i (teacher forcing; L ≤ tokens)."""
        b, length = codes.shape
        if length > self.tokens or caption.shape != (b, self.e_dim):
            raise DataError(f"StoryTransformer: codes (B, <= {self.tokens}) and captions "
                            f"(B, {self.e_dim}) expected, got {tuple(codes.shape)} and "
                            f"{tuple(caption.shape)}")
        bos = torch.full((b, 1), self.codes, dtype=torch.long, device=codes.device)
        seq = self.tok(torch.cat([bos, codes[:, :-1]], 1)) + self.pos[:length]
        p = self.prompts.shape[0]
        prefix = torch.cat([self.prompts.expand(b, p, self.d), self.caption(caption)[:, None]], 1)
        h = torch.cat([prefix, seq], 1)
        n = h.shape[1]
        mask = torch.triu(torch.ones(n, n, dtype=torch.bool, device=h.device), 1)
        src = self._source(source, b)
        for blk in self.blocks:
            h = blk(h, mask, src)
        return self.head(self.ln(h[:, p + 1:]))

    def loss(self, codes: torch.Tensor, caption: torch.Tensor,
             source: torch.Tensor | None = None) -> torch.Tensor:
        """Mean next-token cross-entropy of the frame's codes (B, tokens)."""
        logits = self(codes, caption, source)
        return F.cross_entropy(logits.reshape(-1, self.codes), codes.reshape(-1))

    @torch.no_grad()
    def sample(self, caption: torch.Tensor, source: torch.Tensor | None = None,
               generator: torch.Generator | None = None, temperature: float = 1.0,
               top_k: int = 0) -> torch.Tensor:
        """Codes (B, tokens) drawn token by token (temperature, optional top-k)."""
        b = caption.shape[0]
        out = torch.zeros(b, 0, dtype=torch.long, device=caption.device)
        for _ in range(self.tokens):
            step = torch.cat([out, torch.zeros(b, 1, dtype=torch.long, device=out.device)], 1)
            logits = self(step, caption, source)[:, -1] / max(temperature, 1e-6)
            if top_k > 0:
                kth = logits.topk(min(top_k, self.codes), dim=1).values[:, -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            probs = logits.softmax(1).cpu()
            nxt = torch.multinomial(probs, 1, generator=generator).to(out.device)
            out = torch.cat([out, nxt], 1)
        return out
