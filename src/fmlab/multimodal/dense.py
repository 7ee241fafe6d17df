"""DenseCLIP (Rao et al., CVPR 2022) as library pieces: language-guided dense prediction.

The image tower's feature map *before pooling* ``x`` (B,C,H,W) is projected to the text width,
giving pixel embeddings ``z`` (B,D,H,W), and pooled by attention into a global vector ``z̄``.
Class text embeddings ``t`` (K,D) come from learnable context (CoOp-style) and a text encoder;
context-aware prompting refines them with the image,

    t ← t + γ · TransDecoder(query=t, key/value=[z̄; z]),    γ learnable, initialised to 1e-4,

so the text starts from its language prior and only slowly drifts toward the image. The
pixel-text score map ``s = ẑ t̂ᵀ`` (L2-normalised, cosine in [-1, 1]) is (i) supervised by an
auxiliary segmentation loss and (ii) concatenated to ``x`` before a light FPN-like head.
The baseline (``language=False``) is the same backbone and head on ``x`` alone: no text, no score
map, no auxiliary loss, so the comparison isolates what language adds.

Class 0 of a mask is background and has no text; class ``k+1`` is text class ``k``. The
auxiliary loss scores background with one learnable logit (a threshold on the cosines).
:class:`~fmlab.multimodal.dense_objective.DenseCLIPObjective` trains it through the engine
(``loss, logs = objective(batch)``).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from fmlab.errors import ModelError
from fmlab.utils.validation import check, finite_float, positive_int


class DenseFeatures(NamedTuple):
    """What :class:`DenseImageEncoder` returns.

    Attributes:
        x: the backbone's last feature map (B,C,H,W), before pooling.
        z: pixel embeddings in the text width (B,D,H,W), or None without projection.
        z_global: the attention-pooled global embedding z̄ (B,D), or None without projection.
    """

    x: torch.Tensor
    z: torch.Tensor | None
    z_global: torch.Tensor | None


class DenseImageEncoder(nn.Module):
    """A ResNet-style :class:`~fmlab.models.Backbone` read before its pooling, projected to the text width.

    ``z`` is a 1×1 convolution of the map (per-pixel linear projection, as DenseCLIP reads CLIP's
    attention pool without its pooling); ``z̄`` is attention pooling (query = the mean pixel,
    keys/values = [mean; pixels]) or the plain mean.

    Args:
        backbone: a Backbone whose ``trunk`` has ``forward_map`` (float NCHW → (B,C,H,W)).
        width: the text width D, or None for the map alone (the language-free baseline).
        pooling: ``"attention"`` or ``"mean"`` for z̄.
        heads: attention heads of the pool (must divide ``width``).

    Examples:
        >>> from fmlab.models import create_backbone
        >>> enc = DenseImageEncoder(create_backbone("resnet_cifar", depth=8, width=4, seed=0), 8, heads=2)
        >>> f = enc(torch.zeros(2, 32, 32, 3, dtype=torch.uint8))
        >>> tuple(f.x.shape), tuple(f.z.shape), tuple(f.z_global.shape)
        ((2, 16, 8, 8), (2, 8, 8, 8), (2, 8))
    """

    def __init__(self, backbone: nn.Module, width: int | None, pooling: str = "attention", heads: int = 4) -> None:
        super().__init__()
        trunk = getattr(backbone, "trunk", None)
        if not callable(getattr(trunk, "forward_map", None)):
            raise ModelError(f"backbone: {getattr(backbone, 'name', type(backbone).__name__)!r} has no "
                             "trunk.forward_map (a feature map before pooling); use a ResNet-style backbone")
        check(pooling in ("attention", "mean"), "pooling", pooling, "must be 'attention' or 'mean'")
        self.backbone, self.pooling = backbone, pooling
        self.channels = int(backbone.feature_dim)
        self.width = None if width is None else positive_int("width", width)
        self.proj = self.attn = None
        if self.width is not None:
            self.proj = nn.Conv2d(self.channels, self.width, 1)
            if pooling == "attention":
                heads = positive_int("heads", heads)
                check(self.width % heads == 0, "heads", heads, f"must divide width {self.width}")
                self.attn = nn.MultiheadAttention(self.width, heads, batch_first=True)

    def feature_map(self, images: torch.Tensor) -> torch.Tensor:
        """The map before pooling (B,C,H,W) of uint8 images (B,H,W[,C]) or preprocessed float NCHW."""
        return self.backbone.trunk.forward_map(self.backbone.prepare(images))

    def forward(self, images: torch.Tensor) -> DenseFeatures:
        """Encode images.

        Args:
            images: uint8 (B,H,W[,C]) or preprocessed float (B,C,H,W).

        Returns:
            :class:`DenseFeatures` (``z``, ``z_global`` None when ``width`` is None).
        """
        x = self.feature_map(images)
        if self.proj is None:
            return DenseFeatures(x, None, None)
        z = self.proj(x)
        tokens = z.flatten(2).transpose(1, 2)  # (B, HW, D)
        mean = tokens.mean(dim=1, keepdim=True)
        if self.attn is None:
            return DenseFeatures(x, z, mean[:, 0])
        pooled, _ = self.attn(mean, torch.cat([mean, tokens], 1), torch.cat([mean, tokens], 1), need_weights=False)
        return DenseFeatures(x, z, pooled[:, 0])


class MeanTokenEncoder(nn.Module):
    """A tiny text encoder (mean of token embeddings → LayerNorm → linear) for offline use and tests.

    Args:
        embed_dim: token embedding width E.
        width: output width D.

    Examples:
        >>> MeanTokenEncoder(6, 4)(torch.zeros(3, 5, 6)).shape
        torch.Size([3, 4])
    """

    def __init__(self, embed_dim: int, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(positive_int("embed_dim", embed_dim))
        self.proj = nn.Linear(embed_dim, positive_int("width", width))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(K, L, E) token embeddings → (K, D) text embeddings."""
        return self.proj(self.norm(tokens.mean(dim=1)))


class ClassPrompts(nn.Module):
    """Class text embeddings with one shared learnable context (CoOp): ``encoder([v_1..v_M, CLASS_k])``.

    For a real text tower use :class:`fmlab.adapt.coop.PromptLearner` (``PromptLearner(model,
    names, n_ctx=8)``), which has the same call (no input → (K, D)); freeze its towers
    (``requires_grad_(False)``) to train only the context. This one takes the class tokens and
    any encoder callable, so it runs offline.

    Args:
        class_tokens: (K, L, E) fixed token embeddings of the class names.
        encoder: callable (K, M+L, E) → (K, D); its parameters train unless frozen by the caller.
        n_ctx: context length M.
        seed: seed of the context initialisation (N(0, 0.02²), CoOp's).

    Examples:
        >>> p = ClassPrompts(torch.randn(3, 2, 6), MeanTokenEncoder(6, 4), n_ctx=8)
        >>> p().shape, tuple(p.ctx.shape)
        (torch.Size([3, 4]), (8, 6))
    """

    def __init__(self, class_tokens: torch.Tensor, encoder, n_ctx: int = 8, seed: int = 0) -> None:
        super().__init__()
        check(class_tokens.ndim == 3, "class_tokens", tuple(class_tokens.shape), "must be (K, L, E)")
        check(callable(encoder), "encoder", encoder, "must be callable (K, M+L, E) -> (K, D)")
        n_ctx = positive_int("n_ctx", n_ctx)
        self.register_buffer("class_tokens", class_tokens.detach().float().clone())
        self.encoder = encoder
        g = torch.Generator().manual_seed(int(seed))
        self.ctx = nn.Parameter(torch.randn(n_ctx, class_tokens.shape[-1], generator=g) * 0.02)

    @property
    def num_classes(self) -> int:
        """K."""
        return int(self.class_tokens.shape[0])

    def forward(self) -> torch.Tensor:
        """The class text embeddings (K, D)."""
        k = self.class_tokens.shape[0]
        return self.encoder(torch.cat([self.ctx.unsqueeze(0).expand(k, -1, -1), self.class_tokens], dim=1))


class ContextDecoder(nn.Module):
    """Context-aware prompting: ``t + γ · TransDecoder(query=t, key/value=[z̄; z])``.

    Text and visual tokens are layer-normed and projected to a small decoder width, run through
    ``layers`` pre-norm decoder layers (self-attention among classes, cross-attention to the
    image) and projected back; γ (a learnable scalar) starts at ``gamma_init`` = 1e-4 so training
    begins from the language prior.

    Args:
        width: the text width D.
        layers: decoder layers (1–2 suffice here).
        heads: attention heads (must divide ``dim``).
        dim: the decoder's internal width.
        gamma_init: γ's initial value.

    Examples:
        >>> dec = ContextDecoder(8, dim=8, heads=2)
        >>> dec(torch.randn(3, 8), torch.randn(2, 5, 8)).shape, round(dec.gamma.item(), 6)
        (torch.Size([2, 3, 8]), 0.0001)
    """

    def __init__(self, width: int, layers: int = 1, heads: int = 4, dim: int = 64, gamma_init: float = 1e-4) -> None:
        super().__init__()
        width, dim = positive_int("width", width), positive_int("dim", dim)
        heads = positive_int("heads", heads)
        check(dim % heads == 0, "heads", heads, f"must divide the decoder width {dim}")
        self.text_in = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, dim))
        self.visual_in = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, dim))
        layer = nn.TransformerDecoderLayer(dim, heads, 4 * dim, dropout=0.0, batch_first=True, norm_first=True)
        self.decoder = nn.TransformerDecoder(layer, positive_int("layers", layers))
        self.out = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, width))
        self.gamma = nn.Parameter(torch.tensor(finite_float("gamma_init", gamma_init)))

    def forward(self, text: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        """Refine class embeddings with each image's visual context.

        Args:
            text: (K, D) shared or (B, K, D) per-image class embeddings.
            visual: (B, N, D) visual tokens ``[z̄; z]`` (N = 1 + H·W).

        Returns:
            (B, K, D) per-image class embeddings.
        """
        if text.ndim == 2:
            text = text.unsqueeze(0).expand(visual.shape[0], -1, -1)
        delta = self.out(self.decoder(self.text_in(text), self.visual_in(visual)))
        return text + self.gamma * delta


def score_map(z: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """The pixel-text score map ``s = ẑ t̂ᵀ``: cosine of every pixel with every class.

    The issue's (H, W, K) map in channel-first layout (B, K, H, W), so it concatenates with
    feature maps and feeds ``F.cross_entropy`` as logits directly.

    Args:
        z: pixel embeddings (B, D, H, W).
        text: class embeddings (K, D) or per-image (B, K, D).

    Returns:
        (B, K, H, W) cosines in [-1, 1].

    Examples:
        >>> s = score_map(torch.ones(1, 2, 3, 3), torch.tensor([[1.0, 1.0], [1.0, -1.0]]))
        >>> tuple(s.shape), [round(v, 4) for v in s[0, :, 0, 0].tolist()]
        ((1, 2, 3, 3), [1.0, 0.0])
    """
    if text.ndim == 2:
        text = text.unsqueeze(0).expand(z.shape[0], -1, -1)
    if z.shape[1] != text.shape[-1]:
        raise ModelError(f"text: width {text.shape[-1]} differs from the pixel embeddings' {z.shape[1]}")
    return torch.einsum("bdhw,bkd->bkhw", F.normalize(z, dim=1), F.normalize(text, dim=-1))


def _conv_bn(cin: int, cout: int, k: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class SegmentationHead(nn.Module):
    """A light FPN-like head: lateral 1×1 conv, ×2 upsampling, 3×3 smoothing, 1×1 classifier.

    Args:
        in_channels: C (baseline) or C + K (with the score map concatenated).
        num_classes: output classes, background included.
        hidden: the head's width.

    Examples:
        >>> SegmentationHead(5, 3, hidden=4)(torch.zeros(2, 5, 4, 4)).shape
        torch.Size([2, 3, 8, 8])
    """

    def __init__(self, in_channels: int, num_classes: int, hidden: int = 64) -> None:
        super().__init__()
        self.in_channels = positive_int("in_channels", in_channels)
        hidden = positive_int("hidden", hidden)
        self.lateral = _conv_bn(in_channels, hidden, 1)
        self.smooth = _conv_bn(hidden, hidden, 3)
        self.classifier = nn.Conv2d(hidden, positive_int("num_classes", num_classes), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W) → logits (B, num_classes, 2H, 2W)."""
        if x.shape[1] != self.in_channels:
            raise ModelError(f"head input: {x.shape[1]} channels, expected in_channels={self.in_channels}")
        y = F.interpolate(self.lateral(x), scale_factor=2, mode="bilinear", align_corners=False)
        return self.classifier(self.smooth(y))


class DenseCLIP(nn.Module):
    """Backbone + (optional) language branch + segmentation head.

    With ``language`` the head reads ``[x; s]`` (C + K channels) and :meth:`forward` also returns
    the score map; without it the head reads ``x`` (C channels) and the model has no text
    parameters at all. ``context_prompting=False`` drops the decoder: ``t`` is the prompts' output.

    Args:
        backbone: a ResNet-style Backbone (see :class:`DenseImageEncoder`).
        prompts: module whose call returns the class embeddings (K, D) (:class:`ClassPrompts`,
            :class:`fmlab.adapt.coop.PromptLearner`); ignored without ``language``.
        num_classes: K, the object classes (the head predicts K + 1 with background).
        width: the text width D (``prompts``' output width).
        language: use the text branch (False: the baseline).
        context_prompting: refine ``t`` with :class:`ContextDecoder`.
        decoder_layers, heads, hidden: sizes of the decoder / pool and head.
        pooling: how z̄ is pooled (``"attention"`` or ``"mean"``).

    Examples:
        >>> from fmlab.models import create_backbone
        >>> bb = create_backbone("resnet_cifar", depth=8, width=4, seed=0)
        >>> m = DenseCLIP(bb, ClassPrompts(torch.randn(3, 1, 8), MeanTokenEncoder(8, 8)), 3, 8, heads=2)
        >>> logits, s = m(torch.zeros(2, 32, 32, dtype=torch.uint8))
        >>> tuple(logits.shape), tuple(s.shape)
        ((2, 4, 16, 16), (2, 3, 8, 8))
    """

    def __init__(self, backbone: nn.Module, prompts: nn.Module | None, num_classes: int, width: int,
                 language: bool = True, context_prompting: bool = True, decoder_layers: int = 1,
                 heads: int = 4, hidden: int = 64, pooling: str = "attention") -> None:
        super().__init__()
        self.num_classes = positive_int("num_classes", num_classes)
        self.language = bool(language)
        self.encoder = DenseImageEncoder(backbone, width if self.language else None, pooling, heads)
        self.prompts = self.decoder = None
        extra = 0
        if self.language:
            check(prompts is not None, "prompts", prompts, "is required with language=True")
            self.prompts, extra = prompts, self.num_classes
            if context_prompting:
                self.decoder = ContextDecoder(width, decoder_layers, heads=heads, dim=max(width, heads))
        self.head = SegmentationHead(self.encoder.channels + extra, self.num_classes + 1, hidden)

    def text_embeddings(self, feats: DenseFeatures) -> torch.Tensor:
        """Class embeddings for each image: (B, K, D), context-refined when the decoder is on."""
        t = self.prompts()
        if t.shape[0] != self.num_classes:
            raise ModelError(f"prompts: {t.shape[0]} class embeddings, num_classes={self.num_classes}")
        if self.decoder is None:
            return t.unsqueeze(0).expand(feats.x.shape[0], -1, -1)
        visual = torch.cat([feats.z_global.unsqueeze(1), feats.z.flatten(2).transpose(1, 2)], dim=1)
        return self.decoder(t, visual)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Head logits (B, K+1, 2H, 2W) and the score map (B, K, H, W) (None without language)."""
        feats = self.encoder(images)
        if not self.language:
            return self.head(feats.x), None
        s = score_map(feats.z, self.text_embeddings(feats))
        return self.head(torch.cat([feats.x, s], dim=1)), s

    @torch.no_grad()
    def predict(self, images: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        """Argmax class map (B, h, w) at ``size`` (default: the images' own H, W); 0 = background."""
        logits, _ = self(images)
        size = tuple(size) if size is not None else _image_size(images)
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False).argmax(1)


def _image_size(images: torch.Tensor) -> tuple[int, int]:
    if images.dtype == torch.uint8:
        return tuple(images.shape[1:3])
    return tuple(images.shape[-2:])
