"""A small Vision Transformer for 32x32 pre-training experiments (MAE, MP3, DINO, SimCLR).

Why our own instead of timm: MAE needs "encode only the visible tokens", MP3 needs "queries are
all tokens, keys/values only a context subset, and no position embeddings"; both are a few lines
here and awkward through timm's forward hooks. Defaults give a ViT-Tiny-like model for CIFAR:
patch 4 on 32x32 (64 tokens), dim 192, depth 6, 3 heads.

Token layout: ``[cls] + patches`` when ``class_token=True``; ``num_prefix_tokens`` says how many
prefix tokens there are. Position embeddings (2-D sin-cos initialised, learnable) cover the patch
tokens only and are resized bicubically when an input's grid differs from ``img_size``'s (DINO's
local crops). ``forward(x) -> (N, D)`` pools with the cls token or the mean of patch tokens.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fmlab.errors import ConfigError, DataError

__all__ = ["Attention", "Block", "VisionTransformer", "sincos_pos_embed_2d", "vit_tiny_cifar"]


def sincos_pos_embed_2d(dim: int, grid_h: int, grid_w: int) -> Tensor:
    """Fixed 2-D sine-cosine embeddings (L, dim): half the channels encode rows, half columns."""
    if dim % 4 != 0:
        raise ConfigError(f"sin-cos position embeddings need dim divisible by 4, got {dim}")
    quarter = dim // 4
    omega = 1.0 / (10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter))
    ys, xs = torch.meshgrid(torch.arange(grid_h, dtype=torch.float64),
                            torch.arange(grid_w, dtype=torch.float64), indexing="ij")

    def enc(pos: Tensor) -> Tensor:
        out = pos.reshape(-1, 1) * omega[None, :]
        return torch.cat([out.sin(), out.cos()], dim=1)

    return torch.cat([enc(ys), enc(xs)], dim=1).float()


class Attention(nn.Module):
    """Multi-head self-attention where keys/values may come from a subset of the tokens."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ConfigError(f"embed dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, kv_index: Tensor | None = None) -> Tensor:
        """``x`` (N, T, D); ``kv_index`` (N, K) token indices serving as keys and values."""
        n, t, d = x.shape
        h = self.num_heads
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        if kv_index is not None:
            idx = kv_index.unsqueeze(-1).expand(-1, -1, d)
            k, v = k.gather(1, idx), v.gather(1, idx)

        def heads(z: Tensor) -> Tensor:
            return z.reshape(n, z.shape[1], h, d // h).transpose(1, 2)

        out = F.scaled_dot_product_attention(heads(q), heads(k), heads(v))
        return self.proj(out.transpose(1, 2).reshape(n, t, d))

    def probabilities(self, x: Tensor) -> Tensor:
        """The attention maps ``(N, heads, T, T)`` this layer applies to ``x`` (its normalised
        input): softmax(q kᵀ / √d_head), the weights ``forward``'s fused kernel uses."""
        n, t, d = x.shape
        h = self.num_heads
        q, k, _ = self.qkv(x).chunk(3, dim=-1)
        q = q.reshape(n, t, h, d // h).transpose(1, 2)
        k = k.reshape(n, t, h, d // h).transpose(1, 2)
        return torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d // h), dim=-1)


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)); x + mlp(norm(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0,
                 qkv_bias: bool = True) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor, kv_index: Tensor | None = None) -> Tensor:
        x = x + self.attn(self.norm1(x), kv_index)
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    """ViT mapping float (N, C, H, W) preprocessed images to pooled (N, D) features."""

    def __init__(self, img_size: int = 32, patch_size: int = 4, in_chans: int = 3,
                 embed_dim: int = 192, depth: int = 6, num_heads: int = 3,
                 mlp_ratio: float = 4.0, pos_embed: bool = True, class_token: bool = True,
                 pool: str = "cls", qkv_bias: bool = True) -> None:
        super().__init__()
        if img_size % patch_size != 0:
            raise ConfigError(f"img_size {img_size} is not a multiple of patch_size {patch_size}")
        if pool not in ("cls", "mean"):
            raise ConfigError(f"pool must be 'cls' or 'mean', got {pool!r}")
        if pool == "cls" and not class_token:
            raise ConfigError("pool='cls' needs class_token=True")
        self.img_size, self.patch_size, self.in_chans = img_size, patch_size, in_chans
        self.embed_dim = self.feature_dim = embed_dim
        self.grid = img_size // patch_size
        self.num_patches = self.grid * self.grid
        self.pool = pool
        self.num_prefix_tokens = 1 if class_token else 0
        self.patch_embed = nn.Conv2d(in_chans, embed_dim, patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if class_token else None
        if pos_embed:
            self.pos_embed: nn.Parameter | None = nn.Parameter(
                sincos_pos_embed_2d(embed_dim, self.grid, self.grid).unsqueeze(0))
        else:
            self.pos_embed = None
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self._init_weights()

    # -- init -----------------------------------------------------------------------------
    def _init_weights(self) -> None:
        w = self.patch_embed.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.patch_embed.bias)
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=0.02)
        for m in self.blocks.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    # -- patches --------------------------------------------------------------------------
    def patchify(self, imgs: Tensor) -> Tensor:
        """(N, C, H, W) -> (N, L, p*p*C), each patch flattened in (row, col, channel) order."""
        n, c, h, w = imgs.shape
        p = self.patch_size
        if h % p or w % p:
            raise DataError(f"image size {h}x{w} is not a multiple of patch size {p}")
        x = imgs.reshape(n, c, h // p, p, w // p, p)
        return x.permute(0, 2, 4, 3, 5, 1).reshape(n, (h // p) * (w // p), p * p * c)

    def unpatchify(self, x: Tensor, grid: tuple[int, int] | None = None) -> Tensor:
        """(N, L, p*p*C) -> (N, C, H, W); ``grid`` defaults to a square one."""
        n, length, dim = x.shape
        p = self.patch_size
        gh, gw = grid or (math.isqrt(length),) * 2
        if gh * gw != length:
            raise DataError(f"{length} patches do not form a {gh}x{gw} grid")
        c = dim // (p * p)
        x = x.reshape(n, gh, gw, p, p, c).permute(0, 5, 1, 3, 2, 4)
        return x.reshape(n, c, gh * p, gw * p)

    # -- tokens ---------------------------------------------------------------------------
    def _pos_for(self, gh: int, gw: int) -> Tensor | None:
        if self.pos_embed is None:
            return None
        if gh == self.grid and gw == self.grid:
            return self.pos_embed
        pe = self.pos_embed.reshape(1, self.grid, self.grid, -1).permute(0, 3, 1, 2)
        pe = F.interpolate(pe, size=(gh, gw), mode="bicubic", align_corners=False)
        return pe.permute(0, 2, 3, 1).reshape(1, gh * gw, -1)

    def embed_patches(self, x: Tensor) -> Tensor:
        """Patch tokens (N, L, D) with position embeddings added (if the model has them)."""
        if x.ndim != 4 or x.shape[1] != self.in_chans:
            raise DataError(f"ViT expects float (N, {self.in_chans}, H, W), "
                            f"got shape {tuple(x.shape)}")
        t = self.patch_embed(x)
        gh, gw = t.shape[-2:]
        t = t.flatten(2).transpose(1, 2)
        pos = self._pos_for(gh, gw)
        return t if pos is None else t + pos

    def _prefix(self, tokens: Tensor) -> Tensor:
        if self.cls_token is None:
            return tokens
        return torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)

    def forward_tokens(self, x: Tensor, ids_keep: Tensor | None = None,
                       context_ids: Tensor | None = None) -> Tensor:
        """Normalised output tokens ``(N, prefix + T, D)``.

        ids_keep (N, K): encode only these patch tokens (MAE), T = K.
        context_ids (N, K): every patch token is a query, but keys/values in every block are
        only the prefix and these patch tokens (MP3), T = L.
        """
        t = self.embed_patches(x)
        if ids_keep is not None:
            if context_ids is not None:
                raise ConfigError("pass ids_keep or context_ids, not both")
            t = t.gather(1, ids_keep.unsqueeze(-1).expand(-1, -1, t.shape[-1]))
        t = self._prefix(t)
        kv_index = None
        if context_ids is not None:
            p = self.num_prefix_tokens
            prefix = torch.arange(p, device=t.device).expand(t.shape[0], p)
            kv_index = torch.cat([prefix, context_ids + p], dim=1)
        for blk in self.blocks:
            t = blk(t, kv_index)
        return self.norm(t)

    def pool_tokens(self, tokens: Tensor) -> Tensor:
        if self.pool == "cls":
            return tokens[:, 0]
        return tokens[:, self.num_prefix_tokens:].mean(dim=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.pool_tokens(self.forward_tokens(x))


def vit_tiny_cifar(**overrides) -> VisionTransformer:
    """The default small ViT: patch 4 on 32x32, dim 192, depth 6, 3 heads."""
    return VisionTransformer(**overrides)


def attention_maps(vit: VisionTransformer, x: Tensor, layers: list[int] | None = None) -> list[Tensor]:
    """The attention maps ``(N, heads, T, T)`` of blocks ``layers`` (default: all, in depth order;
    negative indices count from the end) for preprocessed images ``x``, prefix tokens included.
    The forward pass itself is unchanged (hooks read each block's normalised input); gradients
    flow when enabled (attention distillation trains through them).

    Examples:
        >>> vit = VisionTransformer(img_size=8, patch_size=4, embed_dim=8, depth=2, num_heads=2)
        >>> [tuple(a.shape) for a in attention_maps(vit, torch.zeros(1, 3, 8, 8))]
        [(1, 2, 5, 5), (1, 2, 5, 5)]
    """
    depth = len(vit.blocks)
    wanted = sorted({i % depth for i in layers}) if layers is not None else list(range(depth))
    maps: dict[int, Tensor] = {}

    def hook(i: int):
        return lambda m, inp, out: maps.__setitem__(i, m.probabilities(inp[0]))

    hooks = [vit.blocks[i].attn.register_forward_hook(hook(i)) for i in wanted]
    try:
        vit.forward_tokens(x)
    finally:
        for hk in hooks:
            hk.remove()
    order = [i % depth for i in layers] if layers is not None else wanted
    return [maps[i] for i in order]
