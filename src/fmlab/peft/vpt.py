"""VPT: visual prompt tuning for ViT backbones, shallow and deep (Jia et al., ECCV 2022).

``num_tokens`` learnable prompt tokens are inserted after the prefix tokens (class / register
tokens) of the sequence that enters the first transformer block: [CLS, P, patches]. *Shallow*: only
those tokens are learnt and they flow through the blocks like patches. *Deep*: each block i > 0
gets a fresh learnable set that replaces the prompt outputs of block i − 1. After the last block the
prompt positions are dropped, so the sequence has its original length and every pooling (class
token, average, attention pool) and head work unchanged. Everything but the prompts (and the
``head=`` modules) is frozen. Prompts carry no position embedding.

It works through forward hooks on the blocks, so it needs no change to the ViT class. What a ViT
must expose (timm's ``VisionTransformer`` and ``fmlab.models.vit.ViT`` do; open_clip's image tower
through ``transformer.resblocks``):

- ``blocks``: the transformer blocks, an ``nn.Sequential`` or ``nn.ModuleList`` of modules that map
  tokens (B, T, D) → (B, T, D), the tokens as first positional argument or keyword ``x``
  (open_clip: ``transformer.resblocks`` with ``batch_first`` tokens);
- ``embed_dim`` (or ``num_features`` / ``width`` / ``transformer.width``): D;
- ``num_prefix_tokens``: tokens before the patches (default 1 if it has a non-None ``cls_token``
  or ``class_embedding``, else 0).

Prompts are initialised as in VPT, uniform(±√(6 / (3·p_h·p_w + D))) with the patch size taken from
``patch_embed.patch_size`` (or ``patch_size``) when present, else ±√(6 / 2D), drawn from a
``torch.Generator`` seeded with ``seed``. ``targets`` names the ViT module; ``None`` finds it (the
model itself or the one submodule that looks like a ViT).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from fmlab.errors import ConfigError, ModelError
from fmlab.peft.core import PeftMethod, Stage, register
from fmlab.peft.recipe import Recipe
from fmlab.peft.targets import get_module

PROMPT_ATTR = "vpt_prompts"


@dataclass
class VptOptions:
    num_tokens: int = 10
    deep: bool = False
    dropout: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.num_tokens, int) or self.num_tokens < 1:
            raise ConfigError(f"vpt: num_tokens must be a positive integer, got {self.num_tokens!r}")
        if not isinstance(self.deep, bool):
            raise ConfigError(f"vpt: deep must be true or false, got {self.deep!r}")
        if not isinstance(self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"vpt: dropout must be in [0, 1), got {self.dropout!r}")


@dataclass
class VitInterface:
    blocks: list[nn.Module]
    embed_dim: int
    num_prefix_tokens: int
    patch_area: int | None


def _blocks(vit: nn.Module) -> Any:
    blocks = getattr(vit, "blocks", None)
    if blocks is None:
        blocks = getattr(getattr(vit, "transformer", None), "resblocks", None)
    return blocks


def vit_interface(vit: nn.Module) -> VitInterface:
    """Read what VPT needs from a ViT; :class:`ModelError` names what is missing."""
    blocks = _blocks(vit)
    if not isinstance(blocks, (nn.Sequential, nn.ModuleList)) or len(blocks) == 0:
        raise ModelError(f"vpt: {type(vit).__name__} has no 'blocks' (nn.Sequential/ModuleList of "
                         "transformer blocks)")
    dim = None
    for owner, attr in ((vit, "embed_dim"), (vit, "num_features"), (vit, "width"),
                        (getattr(vit, "transformer", None), "width")):
        val = getattr(owner, attr, None) if owner is not None else None
        if isinstance(val, int) and val > 0:
            dim = val
            break
    if dim is None:
        raise ModelError(f"vpt: {type(vit).__name__} exposes no 'embed_dim' (token width)")
    npre = getattr(vit, "num_prefix_tokens", None)
    if not isinstance(npre, int):
        has_cls = any(getattr(vit, a, None) is not None for a in ("cls_token", "class_embedding"))
        npre = 1 if has_cls else 0
    patch = getattr(getattr(vit, "patch_embed", None), "patch_size", None)
    if patch is None:
        patch = getattr(vit, "patch_size", None)
    if isinstance(patch, int):
        patch = (patch, patch)
    area = int(patch[0]) * int(patch[1]) if isinstance(patch, (tuple, list)) else None
    return VitInterface(list(blocks), dim, npre, area)


def _looks_like_vit(module: nn.Module) -> bool:
    try:
        vit_interface(module)
    except ModelError:
        return False
    return True


class VisualPrompts(nn.Module):
    """The learnable prompts (depth × num_tokens × D) and the hooks that splice them in."""

    def __init__(self, depth: int, num_tokens: int, dim: int, num_prefix: int, deep: bool,
                 dropout: float, init_bound: float, generator: torch.Generator) -> None:
        super().__init__()
        layers = depth if deep else 1
        data = torch.rand(layers, num_tokens, dim, generator=generator) * 2 - 1
        self.prompts = nn.Parameter(data * init_bound)
        self.num_tokens, self.num_prefix, self.deep = num_tokens, num_prefix, deep
        self.dropout = nn.Dropout(dropout)

    def _prompt(self, i: int, x: Tensor) -> Tensor:
        p = self.prompts[i].to(dtype=x.dtype, device=x.device)
        return self.dropout(p).unsqueeze(0).expand(x.shape[0], -1, -1)

    def splice(self, i: int, x: Tensor) -> Tensor:
        """Tokens entering block i: insert (i = 0) or replace (deep, i > 0) the prompt tokens."""
        k, n = self.num_prefix, self.num_tokens
        if i == 0:
            return torch.cat([x[:, :k], self._prompt(0, x), x[:, k:]], dim=1)
        return torch.cat([x[:, :k], self._prompt(i, x), x[:, k + n:]], dim=1)

    def strip(self, x: Tensor) -> Tensor:
        k, n = self.num_prefix, self.num_tokens
        return torch.cat([x[:, :k], x[:, k + n:]], dim=1)


class _SpliceHook:
    """Forward pre-hook of block i. A plain object rather than a closure so that ``deepcopy`` of
    the model copies it along with (and pointing to) the copied prompts."""

    def __init__(self, prompts: VisualPrompts, i: int) -> None:
        self.prompts, self.i = prompts, i

    def __call__(self, _module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        if args:
            return (self.prompts.splice(self.i, _check_tokens(args[0])), *args[1:]), kwargs
        if "x" in kwargs:
            x = self.prompts.splice(self.i, _check_tokens(kwargs["x"]))
            return args, dict(kwargs, x=x)
        raise ModelError("vpt: a block was called without its tokens (first argument or x=)")


class _StripHook:
    """Forward hook of the last block: drop the prompt positions."""

    def __init__(self, prompts: VisualPrompts) -> None:
        self.prompts = prompts

    def __call__(self, _module: nn.Module, _args: tuple, out: Any) -> Any:
        if isinstance(out, tuple):
            return (self.prompts.strip(_check_tokens(out[0])), *out[1:])
        return self.prompts.strip(_check_tokens(out))


def _check_tokens(x: Any) -> Tensor:
    if not isinstance(x, Tensor) or x.dim() != 3:
        raise ModelError("vpt: blocks must take tokens shaped (batch, tokens, dim); got "
                         f"{getattr(x, 'shape', type(x).__name__)}")
    return x


@register
class Vpt(PeftMethod):
    name = "vpt"
    recipe = Recipe(lr=5e-3)
    Options = VptOptions
    kind = "ViT (blocks + embed_dim)"
    mergeable = False

    def supports(self, name: str, module: nn.Module) -> bool:
        return _looks_like_vit(module)

    def resolve_targets(self, model, patterns, exclude, opts):  # type: ignore[override]
        names = super().resolve_targets(model, patterns, exclude, opts)
        if len(names) != 1:
            raise ConfigError(f"vpt: expected one ViT module, found {len(names)}: {names!r}; "
                              "pass targets= with the ViT's name")
        return names

    def inject(self, model: nn.Module, targets: list[str], opts: Any,
               info: dict[str, Any] | None) -> dict[str, Any]:
        vit = get_module(model, targets[0])
        if hasattr(vit, PROMPT_ATTR):
            raise ConfigError(f"vpt: {targets[0]!r} already has visual prompts")
        spec = vit_interface(vit)
        if info is not None and (info["depth"] != len(spec.blocks)
                                 or info["embed_dim"] != spec.embed_dim):
            raise ModelError(f"vpt: the adapter was made for {info['depth']} blocks of width "
                             f"{info['embed_dim']}, the ViT has {len(spec.blocks)} of "
                             f"{spec.embed_dim}")
        fan = 3 * spec.patch_area if spec.patch_area else spec.embed_dim
        bound = math.sqrt(6.0 / (fan + spec.embed_dim))
        gen = torch.Generator().manual_seed(opts.seed)
        prompts = VisualPrompts(len(spec.blocks), opts.num_tokens, spec.embed_dim,
                                spec.num_prefix_tokens, opts.deep, opts.dropout, bound, gen)
        ref = next(iter(vit.parameters()), None)
        if ref is not None:
            prompts.to(device=ref.device, dtype=ref.dtype)
        setattr(vit, PROMPT_ATTR, prompts)
        n_hooked = len(spec.blocks) if opts.deep else 1
        for i in range(n_hooked):
            spec.blocks[i].register_forward_pre_hook(_SpliceHook(prompts, i), with_kwargs=True)
        spec.blocks[-1].register_forward_hook(_StripHook(prompts))
        return {"depth": len(spec.blocks), "embed_dim": spec.embed_dim,
                "num_prefix_tokens": spec.num_prefix_tokens}

    def adapter_params(self, model: nn.Module, stage: Stage) -> dict[str, nn.Parameter]:
        prefix = f"{stage.targets[0]}." if stage.targets[0] else ""
        prompts = getattr(get_module(model, stage.targets[0]), PROMPT_ATTR)
        return {f"{prefix}{PROMPT_ATTR}.prompts": prompts.prompts}
