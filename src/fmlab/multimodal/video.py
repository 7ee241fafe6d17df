"""X-CLIP video pieces: a frame encoder with cross-frame messages, MIT pooling, video-specific prompts.

Paper: "Expanding Language-Image Pretrained Models for General Video Recognition" (X-CLIP,
entry 16 in the reference list). An image tower sees one frame at a time, so it cannot tell
*how* an object moves; X-CLIP adds three cheap pieces around it, each a flag here so the
mean-pooling baseline is the same model with the flags off (:meth:`XCLIPConfig.baseline`):

* **cross-frame communication** (``messages``): before each transformer block of the frame
  encoder, every frame's [CLS] token is projected to a *message token*; the T message tokens
  (plus a temporal position embedding) exchange information through self-attention across
  time, and each frame's updated message is appended to that frame's tokens for the block's
  intra-frame attention, then removed before the block's MLP. With ``messages=False`` each frame
  is encoded alone: the frame features are exactly the ViT applied to that frame.
* **multi-frame integration transformer** (``mit``): temporal position embeddings + one
  transformer layer over the T frame features, then the mean gives the video embedding v.
  Without it v is the mean of the frame features (order-invariant, hence blind to direction).
* **video-specific prompting** (``prompts``): each class text embedding t attends to the video's
  visual tokens (patch tokens, averaged over time): ``u = t + CrossAttn(LN(t), LN(visual))``,
  ``u = u + MLP(LN(u))``, ``t' = t + alpha * u``. ``alpha`` is a learnable scalar initialised to
  0.1 as in the paper, so training starts close to the plain class embeddings; ``alpha = 0``
  makes prompting the identity.

:class:`~fmlab.multimodal.video_objective.XCLIPObjective` trains it with CLIP's cross-entropy
between the normalised v and the K class embeddings t' (learnable temperature, CLIP's init 1/0.07), on batches
``{"images": uint8 (B, T, S, S[, 3]), "labels": int64 (B,)}`` such as ``render_video``'s frames.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from fmlab.errors import DataError, ModelError
from fmlab.models.vit import Block, VisionTransformer
from fmlab.utils.validation import check, finite_float, positive_int

__all__ = ["FrameEncoder", "VideoPrompt", "XCLIP", "XCLIPConfig", "sincos_time_embed", "video_to_float"]


@dataclass(frozen=True)
class XCLIPConfig:
    """Sizes and switches of an :class:`XCLIP` model (defaults: a tiny one for 8 x 32x32 grey clips).

    Args:
        frames: most frames T a clip may have (sizes the temporal position embeddings).
        image_size: frame side S in pixels.
        channels: frame channels the encoder sees (1 grey, 3 RGB; grey clips are repeated to 3).
        patch_size: ViT patch side (divides ``image_size``).
        width: ViT token width D.
        depth: ViT blocks.
        heads: attention heads (divide ``width`` and ``embed_dim``).
        embed_dim: joint video-text embedding size E.
        messages: cross-frame message tokens in the frame encoder.
        mit: multi-frame integration transformer (else mean of frame features).
        prompts: video-specific prompting of the class embeddings.
        alpha: initial value of the learnable prompt scale (paper: 0.1).

    Examples:
        >>> XCLIPConfig.baseline().messages, XCLIPConfig().alpha
        (False, 0.1)
    """

    frames: int = 8
    image_size: int = 32
    channels: int = 1
    patch_size: int = 4
    width: int = 64
    depth: int = 2
    heads: int = 2
    embed_dim: int = 64
    messages: bool = True
    mit: bool = True
    prompts: bool = True
    alpha: float = 0.1

    def __post_init__(self) -> None:
        for key in ("frames", "image_size", "patch_size", "width", "depth", "heads", "embed_dim"):
            positive_int(key, getattr(self, key))
        check(self.channels in (1, 3), "channels", self.channels, "must be 1 or 3")
        check(self.image_size % self.patch_size == 0, "patch_size", self.patch_size,
              f"must divide image_size ({self.image_size})")
        for key in ("width", "embed_dim"):
            check(getattr(self, key) % self.heads == 0, key, getattr(self, key),
                  f"must be divisible by heads ({self.heads})")
        finite_float("alpha", self.alpha)

    @classmethod
    def baseline(cls, **overrides) -> XCLIPConfig:
        """The mean-pooling baseline: per-frame [CLS] features, no messages, no MIT, no prompting.

        Args:
            **overrides: other fields (sizes) to set.

        Returns:
            The config with ``messages``, ``mit`` and ``prompts`` off.
        """
        return replace(cls(**overrides), messages=False, mit=False, prompts=False)


def video_to_float(images: Tensor, channels: int) -> Tensor:
    """uint8 clips ``(B, T, S, S)`` or ``(B, T, S, S, 3)`` -> float ``(B, T, channels, S, S)`` in [-1, 1].

    Args:
        images: uint8 (or float in [0, 255]) clips.
        channels: channels wanted (grey clips are repeated to 3; RGB clips need 3).

    Returns:
        Float tensor, channels first per frame.

    Examples:
        >>> video_to_float(torch.zeros(2, 4, 8, 8, dtype=torch.uint8), 3).shape
        torch.Size([2, 4, 3, 8, 8])
    """
    if images.ndim == 4:
        x = images.unsqueeze(2)
    elif images.ndim == 5 and images.shape[-1] == 3:
        x = images.permute(0, 1, 4, 2, 3)
    else:
        raise DataError(f"images: expected (B, T, S, S) or (B, T, S, S, 3) clips, got shape {tuple(images.shape)}")
    if x.shape[2] != channels:
        if channels != 3:
            raise DataError(f"images: RGB clips need a model with channels=3, the model has channels={channels}")
        x = x.expand(-1, -1, 3, -1, -1)
    return x.float().div(127.5).sub(1.0)


def sincos_time_embed(frames: int, dim: int) -> Tensor:
    """1-D sin-cos temporal position embeddings ``(1, frames, dim)``, the learnable ones' initial value.

    A small random init (std 0.02) leaves the frame order nearly invisible at the start, and tiny
    models trained from scratch then sit for hundreds of steps at the order-blind accuracy; sin-cos
    rows are distinct from step 0 (as the ViT's 2-D sin-cos patch positions are).

    Args:
        frames: number of time steps T.
        dim: embedding width (even).

    Returns:
        ``[sin(t * w_i), cos(t * w_i)]`` with ``w_i = 10000^(-2i/dim)``.

    Examples:
        >>> sincos_time_embed(4, 8).shape
        torch.Size([1, 4, 8])
    """
    half = dim // 2
    t = torch.arange(frames, dtype=torch.float32)[:, None]
    omega = 1.0 / 10000 ** (torch.arange(half, dtype=torch.float32) / max(half, 1))
    emb = torch.cat([torch.sin(t * omega), torch.cos(t * omega)], dim=1)
    if emb.shape[1] < dim:
        emb = torch.cat([emb, torch.zeros(frames, dim - emb.shape[1])], dim=1)
    return emb.unsqueeze(0)


class FrameEncoder(nn.Module):
    """A :class:`~fmlab.models.vit.VisionTransformer` over frames, with optional cross-frame messages.

    Args:
        config: model sizes; ``config.messages`` switches the message tokens.

    Examples:
        >>> enc = FrameEncoder(XCLIPConfig(frames=3, image_size=8, width=16, depth=1))
        >>> enc(torch.zeros(2, 3, 1, 8, 8)).shape  # (B, T, 1 + patches, D)
        torch.Size([2, 3, 5, 16])
    """

    def __init__(self, config: XCLIPConfig) -> None:
        super().__init__()
        c = config
        self.vit = VisionTransformer(c.image_size, c.patch_size, c.channels, c.width, c.depth, c.heads)
        self.messages = c.messages
        if c.messages:
            self.msg_fc = nn.ModuleList(nn.Linear(c.width, c.width) for _ in range(c.depth))
            self.msg_norm = nn.ModuleList(nn.LayerNorm(c.width) for _ in range(c.depth))
            self.msg_attn = nn.ModuleList(nn.MultiheadAttention(c.width, c.heads, batch_first=True)
                                          for _ in range(c.depth))
            self.msg_pos = nn.Parameter(sincos_time_embed(c.frames, c.width))

    def _block_with_messages(self, i: int, blk: Block, x: Tensor, b: int, t: int) -> Tensor:
        """One block: CLS -> message, attention across time, append, intra-frame attention, drop."""
        d = x.shape[-1]
        m = self.msg_fc[i](x[:, 0]).reshape(b, t, d) + self.msg_pos[:, :t]
        h = self.msg_norm[i](m)
        m = m + self.msg_attn[i](h, h, h, need_weights=False)[0]
        x = torch.cat([x, m.reshape(b * t, 1, d)], dim=1)
        x = (x + blk.attn(blk.norm1(x)))[:, :-1]
        return x + blk.mlp(blk.norm2(x))

    def forward(self, frames: Tensor) -> Tensor:
        """Encode a batch of clips.

        Args:
            frames: float ``(B, T, C, S, S)`` (see :func:`video_to_float`).

        Returns:
            Normalised tokens ``(B, T, 1 + L, D)``; index 0 on the token axis is each frame's [CLS].
        """
        b, t = frames.shape[:2]
        if self.messages and t > self.msg_pos.shape[1]:
            raise DataError(f"images: clips of {t} frames, the model was built for frames={self.msg_pos.shape[1]}")
        x = self.vit._prefix(self.vit.embed_patches(frames.flatten(0, 1)))
        for i, blk in enumerate(self.vit.blocks):
            x = self._block_with_messages(i, blk, x, b, t) if self.messages else blk(x)
        x = self.vit.norm(x)
        return x.reshape(b, t, *x.shape[1:])


class VideoPrompt(nn.Module):
    """Video-specific prompting: ``t' = t + alpha * u`` with u the class embeddings after attending to the video.

    Args:
        dim: embedding size E.
        heads: attention heads.
        alpha: initial value of the learnable scale (paper: 0.1).

    Examples:
        >>> p = VideoPrompt(8, 2, alpha=0.0)
        >>> t, vis = torch.randn(5, 8), torch.randn(2, 3, 8)
        >>> bool(torch.equal(p(t, vis), t.expand(2, 5, 8)))
        True
    """

    def __init__(self, dim: int, heads: int, alpha: float = 0.1) -> None:
        super().__init__()
        self.norm_text, self.norm_visual, self.norm_mlp = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.alpha = nn.Parameter(torch.tensor(float(alpha)))

    def forward(self, text: Tensor, visual: Tensor) -> Tensor:
        """Prompt the class embeddings with one video's visual tokens each.

        Args:
            text: class embeddings ``(K, E)``.
            visual: visual tokens ``(B, N, E)``.

        Returns:
            Video-specific class embeddings ``(B, K, E)``.
        """
        t = text.unsqueeze(0).expand(visual.shape[0], -1, -1)
        v = self.norm_visual(visual)
        u = t + self.attn(self.norm_text(t), v, v, need_weights=False)[0]
        u = u + self.mlp(self.norm_mlp(u))
        return t + self.alpha * u


class XCLIP(nn.Module):
    """X-CLIP's video side: frame encoder (+ messages), MIT (or mean) pooling, video-specific prompts.

    Args:
        config: sizes and switches (default :class:`XCLIPConfig`).
        **overrides: fields of the config to replace.

    Examples:
        >>> m = XCLIP(frames=4, image_size=8, width=16, depth=1, embed_dim=8)
        >>> v, t = m(torch.zeros(2, 4, 8, 8, dtype=torch.uint8), torch.randn(5, 8))
        >>> v.shape, t.shape, round(m.prompt.alpha.item(), 3)
        (torch.Size([2, 8]), torch.Size([2, 5, 8]), 0.1)
    """

    def __init__(self, config: XCLIPConfig | None = None, **overrides) -> None:
        super().__init__()
        self.config = c = replace(config or XCLIPConfig(), **overrides)
        self.encoder = FrameEncoder(c)
        self.proj = nn.Linear(c.width, c.embed_dim, bias=False)
        self.mit: Block | None = Block(c.embed_dim, c.heads) if c.mit else None
        if c.mit:
            self.time_pos = nn.Parameter(sincos_time_embed(c.frames, c.embed_dim))
        self.prompt = VideoPrompt(c.embed_dim, c.heads, c.alpha) if c.prompts else None

    def encode_frames(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Per-frame features and projected patch tokens.

        Args:
            images: uint8 clips ``(B, T, S, S[, 3])``.

        Returns:
            ``(frame features (B, T, E), patch tokens (B, T, L, E))``.
        """
        tokens = self.proj(self.encoder(video_to_float(images, self.config.channels)))
        return tokens[:, :, 0], tokens[:, :, 1:]

    def pool(self, frame_features: Tensor) -> Tensor:
        """Frame features ``(B, T, E)`` -> video embedding ``(B, E)``: MIT then mean, or plain mean.

        Args:
            frame_features: per-frame features.

        Returns:
            The (unnormalised) video embedding v.
        """
        if self.mit is None:
            return frame_features.mean(dim=1)
        t = frame_features.shape[1]
        if t > self.time_pos.shape[1]:
            raise DataError(f"images: clips of {t} frames, the model was built for frames={self.time_pos.shape[1]}")
        return self.mit(frame_features + self.time_pos[:, :t]).mean(dim=1)

    def forward(self, images: Tensor, text: Tensor) -> tuple[Tensor, Tensor]:
        """Video embeddings and (video-specific) class embeddings.

        Args:
            images: uint8 clips ``(B, T, S, S[, 3])``.
            text: class embeddings ``(K, E)``.

        Returns:
            ``(v (B, E), t' (B, K, E))``, both unnormalised; without prompting t' is t repeated.
        """
        if text.ndim != 2 or text.shape[1] != self.config.embed_dim:
            raise ModelError(f"class embeddings: expected (K, {self.config.embed_dim}), got {tuple(text.shape)}")
        frames, patches = self.encode_frames(images)
        v = self.pool(frames)
        if self.prompt is None:
            return v, text.unsqueeze(0).expand(v.shape[0], -1, -1)
        return v, self.prompt(text, patches.mean(dim=1))
