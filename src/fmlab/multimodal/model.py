"""``ImageTextModel``: any registry image backbone + a text tower + linear projections into one
embedding space, with CLIP's learnable logit scale (and SigLIP's bias).

Each tower can be locked whole or except its top N parameter groups (LiT: "Lu" = locked image,
unlocked text; or the reverse). ``open_clip:`` models load as they are: their own projections
and logit scale, no extra layers.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn

from fmlab.errors import ConfigError, ModelError
from fmlab.multimodal.towers import TextTower, text_tower

_NORMS = (nn.modules.batchnorm._NormBase,)


@dataclass
class ImageTextSpec:
    """What rebuilds a model before its trained weights are loaded (saved as ``clip_model.json``)."""

    image: str = "resnet20_cifar"
    image_weights: str | None = None
    image_input_size: int = 0  # resize images to this before the image tower (0: the tower's own size)
    image_kwargs: dict = field(default_factory=dict)  # architecture options of the image tower
    text: str = "text:minilm"
    embed_dim: int | None = 256  # None: identity projections (towers must agree)
    init_logit_scale: float = 1 / 0.07  # the multiplier
    max_logit_scale: float = 100.0
    init_logit_bias: float | None = None  # SigLIP: -10
    text_max_length: int = 32
    lock_image: bool = False
    image_unlocked_groups: int = 0
    lock_text: bool = False
    text_unlocked_groups: int = 0
    freeze_bn_stats: bool = True  # locked BatchNorms keep their running statistics

    def validate(self, prefix: str = "model") -> None:
        if self.embed_dim is not None and self.embed_dim < 1:
            raise ConfigError(f"{prefix}.embed_dim: {self.embed_dim!r} must be >= 1 or null")
        if not 0 < self.init_logit_scale <= self.max_logit_scale:
            raise ConfigError(f"{prefix}.init_logit_scale: {self.init_logit_scale!r} must be in "
                              f"(0, max_logit_scale={self.max_logit_scale}]")
        for key in ("image_unlocked_groups", "text_unlocked_groups", "image_input_size"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{prefix}.{key}: {getattr(self, key)!r} must be >= 0")


def lock_groups(groups: list[list[nn.Parameter]], unlocked: int) -> None:
    """Freeze every group except the top ``unlocked`` ones (``unlocked=0``: all frozen)."""
    n = len(groups)
    if unlocked > n:
        raise ConfigError(f"cannot leave {unlocked} groups unlocked: the tower has only {n}")
    for i, g in enumerate(groups):
        for p in g:
            p.requires_grad_(i >= n - unlocked)


def module_groups(module: nn.Module) -> list[list[nn.Parameter]]:
    """Parameter groups of a generic image trunk, bottom-up: its direct parameters, then each
    child in registration order, with ``Sequential``/``ModuleList`` children expanded into their
    blocks (ResNet stages → residual blocks, timm ViT ``blocks`` → transformer blocks)."""
    groups: list[list[nn.Parameter]] = []
    own = list(module.parameters(recurse=False))
    if own:
        groups.append(own)
    for child in module.children():
        if isinstance(child, (nn.Sequential, nn.ModuleList)):
            groups += [list(b.parameters()) for b in child if any(True for _ in b.parameters())]
        else:
            ps = list(child.parameters())
            if ps:
                groups.append(ps)
    return groups


def image_groups(backbone: nn.Module) -> list[list[nn.Parameter]]:
    trunk = getattr(backbone, "trunk", backbone)
    inner = getattr(trunk, "visual", None)  # open_clip visual tower: its own LiT grouping
    if inner is not None and hasattr(inner, "transformer") and hasattr(inner, "conv1"):
        groups = [[*inner.conv1.parameters(), inner.class_embedding, inner.positional_embedding,
                   *inner.ln_pre.parameters()]]
        groups += [list(b.parameters()) for b in inner.transformer.resblocks]
        top = list(inner.ln_post.parameters())
        if isinstance(getattr(inner, "proj", None), nn.Parameter):
            top.append(inner.proj)
        return groups + [top]
    return module_groups(trunk)


class ImageTextModel(nn.Module):
    """Two towers and two projections; ``encode_image``/``encode_text`` give joint embeddings
    (not normalised); ``logit_scale_value()`` is the clamped multiplier ``exp(logit_scale)``."""

    def __init__(self, image_backbone: nn.Module, text_encoder: TextTower, embed_dim: int | None,
                 init_logit_scale: float = 1 / 0.07, max_logit_scale: float = 100.0,
                 init_logit_bias: float | None = None, spec: ImageTextSpec | None = None) -> None:
        super().__init__()
        self.image = image_backbone
        self.text = text_encoder
        fi, ft = int(image_backbone.feature_dim), int(text_encoder.feature_dim)
        if embed_dim is None:
            if fi != ft:
                raise ModelError(f"embed_dim=None needs towers of one width; image "
                                 f"{image_backbone.name} gives {fi}, text {text_encoder.name} "
                                 f"gives {ft}; set embed_dim")
            self.image_proj: nn.Module = nn.Identity()
            self.text_proj: nn.Module = nn.Identity()
            embed_dim = fi
        else:
            self.image_proj = nn.Linear(fi, embed_dim, bias=False)
            self.text_proj = nn.Linear(ft, embed_dim, bias=False)
            nn.init.normal_(self.image_proj.weight, std=fi ** -0.5)
            nn.init.normal_(self.text_proj.weight, std=ft ** -0.5)
        self.feature_dim = int(embed_dim)
        self.max_logit_scale = float(max_logit_scale)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(init_logit_scale)))
        self.logit_bias = (nn.Parameter(torch.tensor(float(init_logit_bias)))
                           if init_logit_bias is not None else None)
        self.name = f"clip({image_backbone.name}+{text_encoder.name})"
        self.spec = spec
        self._locked_norms: list[nn.Module] = []

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_spec(cls, spec: ImageTextSpec, load_image_weights: bool = True) -> ImageTextModel:
        from fmlab.models import create_backbone

        spec.validate()
        both_open_clip = spec.image == spec.text and spec.image.startswith("open_clip:")
        weights = None
        if load_image_weights and spec.image_weights:
            weights = os.path.expandvars(spec.image_weights)
            if "$" in weights:
                raise ConfigError(f"model.image_weights: {spec.image_weights!r} names an unset "
                                  "environment variable")
        image = create_backbone(spec.image, weights=weights, **spec.image_kwargs)
        if not hasattr(image, "trunk"):
            raise ModelError(f"{spec.image} is not an image backbone")
        if spec.image_input_size:
            import dataclasses

            size = (int(spec.image_input_size),) * 2
            image.preprocess = dataclasses.replace(image.preprocess, input_size=size)
        text = text_tower(spec.text, max_length=spec.text_max_length)
        embed_dim = None if both_open_clip and spec.embed_dim is None else spec.embed_dim
        model = cls(image, text, embed_dim, spec.init_logit_scale, spec.max_logit_scale,
                    spec.init_logit_bias, spec)
        if both_open_clip and spec.embed_dim is None:
            from fmlab.models.openclip import load_open_clip

            oc = load_open_clip(spec.image, None)
            with torch.no_grad():
                model.logit_scale.copy_(oc.logit_scale.detach().clamp(max=math.log(spec.max_logit_scale)))
                if getattr(oc, "logit_bias", None) is not None and model.logit_bias is None:
                    model.logit_bias = nn.Parameter(oc.logit_bias.detach().clone())
        if spec.lock_image:
            model.lock_image(spec.image_unlocked_groups, spec.freeze_bn_stats)
        if spec.lock_text:
            model.lock_text(spec.text_unlocked_groups)
        return model

    @classmethod
    def from_open_clip(cls, name: str) -> ImageTextModel:
        """An ``open_clip:<arch>[:<tag>]`` model as it is (its projections and logit scale)."""
        return cls.from_spec(ImageTextSpec(image=name, text=name, embed_dim=None))

    # ------------------------------------------------------------------ locking

    def lock_image(self, unlocked_groups: int = 0, freeze_bn_stats: bool = True) -> None:
        groups = image_groups(self.image)
        lock_groups(groups, unlocked_groups)
        head = getattr(self.image, "head", None)
        if head is not None:  # the classifier head plays no part in the joint space
            head.requires_grad_(False)
        if freeze_bn_stats:
            frozen = {id(p) for g in groups[: len(groups) - unlocked_groups] for p in g}
            self._locked_norms = [m for m in self.image.modules() if isinstance(m, _NORMS)
                                  and any(id(p) in frozen for p in m.parameters(recurse=False))]
        self.train(self.training)

    def lock_text(self, unlocked_groups: int = 0) -> None:
        lock_groups(self.text.groups(), unlocked_groups)
        self.train(self.training)

    def train(self, mode: bool = True) -> ImageTextModel:
        super().train(mode)
        for tower in (self.image, self.text):  # a tower locked whole has no dropout or BN updates
            if not any(p.requires_grad for p in tower.parameters()):
                tower.eval()
        for m in self._locked_norms:
            m.eval()
        return self

    @property
    def text_locked(self) -> bool:
        return not any(p.requires_grad for p in self.text.parameters())

    # ------------------------------------------------------------------ encoding

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return self.image_proj(self.image.encode(images))

    def encode_image_tokens(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The joint embedding and the patch tokens of one image pass (token-level objectives).

        Patch tokens are the trunk's last feature map ``(B, H*W, C)`` (a ResNet's ``forward_map``)
        or a ViT's output tokens without its prefix, in the trunk's width (before ``image_proj``);
        the embedding equals :meth:`encode_image`'s (mean-pooled map / the ViT's own pooling).

        Raises:
            fmlab.errors.ModelError: a trunk that exposes neither.
        """
        trunk, x = self.image.trunk, self.image.prepare(images)
        if callable(getattr(trunk, "forward_map", None)):
            fmap = trunk.forward_map(x)
            return self.image_proj(fmap.mean(dim=(2, 3))), fmap.flatten(2).transpose(1, 2)
        if callable(getattr(trunk, "forward_tokens", None)) and callable(getattr(trunk, "pool_tokens", None)):
            tok = trunk.forward_tokens(x)
            return self.image_proj(trunk.pool_tokens(tok)), tok[:, int(getattr(trunk, "num_prefix_tokens", 0)):]
        raise ModelError(f"image tower {self.image.name} exposes no patch tokens (forward_map or "
                         "forward_tokens); use a resnet_cifar or vit backbone")

    def encode_text_tokens(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        device = self.logit_scale.device
        return self.text_proj(self.text(**{k: v.to(device) for k, v in tokens.items()}))

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        return self.encode_text_tokens(self.text.tokenize(texts))

    def logit_scale_value(self) -> torch.Tensor:
        return self.logit_scale.clamp(max=math.log(self.max_logit_scale)).exp()

    @torch.no_grad()
    def clamp_logit_scale(self) -> None:
        """open_clip's post-step clamp: ``0 <= logit_scale <= ln(max)``."""
        self.logit_scale.clamp_(0.0, math.log(self.max_logit_scale))

    def forward(self, images: torch.Tensor, tokens: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encode_image(images), self.encode_text_tokens(tokens)

    def describe(self) -> dict:
        return {"name": self.name, "embed_dim": self.feature_dim,
                "spec": asdict(self.spec) if self.spec is not None else None,
                "image_weights_sha256": getattr(self.image, "weights_sha256", None),
                "text_weights_sha256": getattr(self.text, "weights_sha256", None)}


def count_trainable(module: nn.Module) -> int:
    """Number of parameters that require a gradient (what locking left trainable).

    Examples:
        >>> lin = nn.Linear(3, 2)
        >>> _ = lin.bias.requires_grad_(False)
        >>> count_trainable(lin)
        6
    """
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
