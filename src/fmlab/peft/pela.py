"""PELA, step 1: replace target layers by low-rank factor pairs from the truncated SVD (CVPR 2024).

A target weight read as the matrix W (d_out × d_in, with d_in = in·k… for a conv) becomes
W ≈ W₂W₁ with W₂ = U_r diag(√σ_r) (d_out × r) and W₁ = diag(√σ_r) V_rᵀ (r × d_in), and

    r = ⌊ d_in·d_out / (compression_ratio · (d_in + d_out)) ⌋   (capped at min(d_in, d_out)),

so the pair holds about 1/compression_ratio of the layer's weights. A Linear becomes
``Linear(d_in, r, bias=False) → Linear(r, d_out)``; a Conv (groups = 1) becomes a conv with the
original kernel, stride, padding and dilation and r output channels, then a 1×1 conv to d_out. The
original bias moves to the second factor. The pair is a :class:`LowRankPair` (an ``nn.Sequential``,
so its parameters are ``<name>.0.weight``, ``<name>.1.weight``, ``<name>.1.bias``), which is what the
distillation stage (:mod:`fmlab.peft.pela_distill`) looks for. Only the factors are trainable.

A layer whose rank comes out 0 (too small for the ratio) cannot be compressed: explicit targets
raise :class:`ConfigError`, default targets skip it. PELA changes the architecture, so ``merge`` has
nothing to fold; the saved adapter holds the factors, and loading rebuilds the pairs on a fresh base.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from fmlab.errors import ConfigError, ModelError
from fmlab.peft.core import PeftMethod, Stage, register
from fmlab.peft.recipe import FinetuneContext, Recipe
from fmlab.peft.svd import as_matrix, budget_rank, svd
from fmlab.peft.targets import get_module, set_module

CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass
class PelaOptions:
    compression_ratio: float = 2.0

    def __post_init__(self) -> None:
        r = self.compression_ratio
        if not isinstance(r, (int, float)) or isinstance(r, bool) or r <= 0:
            raise ConfigError(f"pela: compression_ratio must be a positive number, got {r!r}")


@dataclass
class PelaFinetuneSettings:
    """The ``--set`` keys PELA adds to ``fmlab finetune``.

    Args:
        distill_steps: optimiser steps of the distillation stage (0: no distillation).
        distill_lr: its learning rate.
        distill_batch_size: its batch size (capped at the number of images).
        distill_images: unlabelled train images to distil on: 0 = all, else a seeded subset.
        pela_finetune: what the fine-tuning stage trains: ``full`` (the whole compressed model,
            as in PELA; BatchNorm statistics then follow under ``bn_stats=auto``) or ``factors``.
    """

    distill_steps: int = 100
    distill_lr: float = 1e-4
    distill_batch_size: int = 64
    distill_images: int = 0
    pela_finetune: Literal["full", "factors"] = "full"

    def validate(self, prefix: str = "") -> None:
        """Raise ConfigError naming the first out-of-range key."""
        from fmlab.utils.validation import check

        check(self.distill_steps >= 0, f"{prefix}distill_steps", self.distill_steps, "must be >= 0")
        check(self.distill_lr > 0, f"{prefix}distill_lr", self.distill_lr, "must be > 0")
        check(self.distill_batch_size >= 1, f"{prefix}distill_batch_size", self.distill_batch_size,
              "must be >= 1")
        check(self.distill_images >= 0, f"{prefix}distill_images", self.distill_images,
              "must be >= 0")


class LowRankPair(nn.Sequential):
    """Two factors standing in for one layer; ``product()`` is W₂W₁ as a (d_out, d_in) matrix."""

    def product(self) -> Tensor:
        w1 = as_matrix(self[0].weight)  # (r, d_in)
        w2 = as_matrix(self[1].weight)  # (d_out, r)
        return w2 @ w1


def _dims(layer: nn.Module) -> tuple[int, int]:
    m = as_matrix(layer.weight)
    return int(m.shape[1]), int(m.shape[0])  # d_in, d_out


def _compressible(layer: nn.Module) -> bool:
    if isinstance(layer, nn.Linear):
        return True
    return isinstance(layer, CONV_TYPES) and layer.groups == 1 and layer.padding_mode == "zeros"


def build_pair(layer: nn.Module, rank: int, init: bool = True) -> LowRankPair:
    """The factor pair for ``layer`` at ``rank``, initialised from its truncated SVD if ``init``."""
    w = layer.weight
    has_bias = layer.bias is not None
    kw = {"device": w.device, "dtype": w.dtype}
    if isinstance(layer, nn.Linear):
        first: nn.Module = nn.Linear(layer.in_features, rank, bias=False, **kw)
        second: nn.Module = nn.Linear(rank, layer.out_features, bias=has_bias, **kw)
    else:
        conv = type(layer)
        first = conv(layer.in_channels, rank, layer.kernel_size, stride=layer.stride,
                     padding=layer.padding, dilation=layer.dilation, bias=False, **kw)
        second = conv(rank, layer.out_channels, 1, bias=has_bias, **kw)
    if init:
        u, s, vh = svd(as_matrix(w))
        root = s[:rank].sqrt()
        with torch.no_grad():
            second.weight.copy_((u[:, :rank] * root).reshape(second.weight.shape))
            first.weight.copy_((root[:, None] * vh[:rank]).reshape(first.weight.shape))
            if has_bias:
                second.bias.copy_(layer.bias)
    return LowRankPair(first, second)


def _is_mha_out_proj(model: nn.Module, name: str) -> bool:
    parent, _, child = name.rpartition(".")
    return child == "out_proj" and isinstance(
        model.get_submodule(parent) if parent else model, nn.MultiheadAttention)


@register
class Pela(PeftMethod):
    name = "pela"
    Options = PelaOptions
    kind = "Linear or Conv layer (groups=1)"
    recipe = Recipe(lr=1e-4, weight_decay=0.05)
    trains_norm_statistics = True  # with the default pela_finetune=full; the hook decides per run
    finetune_settings = PelaFinetuneSettings

    def prepare_finetune(self, model: nn.Module, apply: Callable[[nn.Module], Any],
                         ctx: FinetuneContext) -> bool:
        """Compress, distil against the original, then fine-tune all or only the factors.

        See :func:`fmlab.peft.pela_distill.prepare_pela_finetune`.
        """
        from fmlab.peft.pela_distill import prepare_pela_finetune

        return prepare_pela_finetune(model, apply, ctx)

    def unlabelled_images(self, settings: Any) -> int | None:
        """PELA distils on ``distill_images`` unlabelled train images (0: all)."""
        return int(settings.distill_images)

    def supports(self, name: str, module: nn.Module) -> bool:
        return _compressible(module)

    def resolve_targets(self, model, patterns, exclude, opts):  # type: ignore[override]
        names = super().resolve_targets(model, patterns, exclude, opts)
        kept = []
        for n in names:
            layer = get_module(model, n)
            r = budget_rank(*_dims(layer), opts.compression_ratio)
            bad = (f"its rank at compression_ratio {opts.compression_ratio} is {r}" if r < 1 else
                   "it is the out_proj of a MultiheadAttention, which reads its weight directly"
                   if _is_mha_out_proj(model, n) else "")
            if bad:
                if patterns is not None:
                    raise ConfigError(f"pela: cannot compress {n!r}: {bad}")
                continue
            kept.append(n)
        if not kept:
            raise ConfigError("pela: no layer can be compressed at this compression_ratio")
        return kept

    def inject(self, model: nn.Module, targets: list[str], opts: Any,
               info: dict[str, Any] | None) -> dict[str, Any]:
        recorded = {d["module"]: d for d in info["layers"]} if info is not None else {}
        layers = []
        for t in targets:
            layer = get_module(model, t)
            if not _compressible(layer):
                raise ModelError(f"pela: {t!r} is a {type(layer).__name__}, not a compressible layer")
            shape = list(layer.weight.shape)
            if info is not None:
                rec = recorded.get(t)
                if rec is None or rec["shape"] != shape:
                    raise ModelError(
                        f"pela: layer {t!r} has weight shape {shape}, the adapter expects "
                        f"{None if rec is None else rec['shape']}")
                rank = int(rec["rank"])
            else:
                rank = budget_rank(*_dims(layer), opts.compression_ratio)
            # On replay the saved factors overwrite the init, so skip the SVD.
            set_module(model, t, build_pair(layer, rank, init=info is None))
            layers.append({"module": t, "rank": rank, "shape": shape,
                           "kind": type(layer).__name__})
        return {"layers": layers}

    def adapter_params(self, model: nn.Module, stage: Stage) -> dict[str, nn.Parameter]:
        out = {}
        for t in stage.targets:
            for n, p in get_module(model, t).named_parameters():
                out[f"{t}.{n}"] = p
        return out


def pela_layers(model: nn.Module) -> dict[str, LowRankPair]:
    """Name → factor pair of every PELA-compressed layer in ``model``."""
    return {n: m for n, m in model.named_modules() if isinstance(m, LowRankPair)}


def parameter_savings(model: nn.Module) -> dict[str, int]:
    """Weights before and after compression over the PELA layers (biases counted in both)."""
    before = after = 0
    for pair in pela_layers(model).values():
        d_in, d_out = as_matrix(pair[0].weight).shape[1], pair[1].weight.shape[0]
        bias = 0 if pair[1].bias is None else pair[1].bias.numel()
        before += d_in * d_out + bias
        after += sum(p.numel() for p in pair.parameters())
    return {"before": before, "after": after, "removed": before - after}
