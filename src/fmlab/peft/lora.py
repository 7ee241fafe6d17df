"""LoRA through Hugging Face ``peft`` on any ``nn.Module``: y = W₀x + (α/r)·B A dropout(x).

fmlab resolves the target patterns itself and hands peft an anchored regular expression of the exact
module names, then calls :func:`peft.inject_adapter_in_model`, which adapts the model in place (its
class and methods stay). Supported layers: Linear, Conv1d/2d/3d and ``nn.MultiheadAttention`` with
equal q/k/v sizes (open_clip's towers); for the latter peft adapts the packed in-projection and the
out-projection together, so an attention's ``out_proj`` cannot be targeted alone.

Defaults follow peft: ``r=8``, ``alpha=8`` (scale α/r, or α/√r with ``use_rslora``), ``dropout=0``,
A Kaiming-uniform and B = 0 (``init=True``; ``"gaussian"`` draws A from N(0, 1/r²); ``False`` makes
B random too, which only tests want), so outputs equal the base model's before training. A is drawn
from ``torch.manual_seed(seed)`` inside a forked RNG, so the same seed gives the same adapter.

peft's LoRA on ``nn.MultiheadAttention`` merges the update into the frozen weights for every
forward and unmerges it after. peft 0.21 adds the out-projection's update twice (W_out +
2·(α/r)·BA; huggingface/peft PR #3774); peft 0.22 adds it once but unmerges by subtracting, so the
frozen weights drift by rounding (≈ 3e-8 per forward) over a training run. fmlab gives every
adapted attention layer its own merge/unmerge: each update is added once, and unmerge puts the
original weight tensors back exactly, on either version. Plain peft 0.21 loading an fmlab MHA
adapter reproduces peft's doubled update.

Files: ``adapter_model.safetensors`` with peft's key names (``base_model.model.<module>.lora_A.weight``)
and ``adapter_config.json`` (peft's ``LoraConfig``), i.e. what ``PeftModel.save_pretrained`` writes,
so ``peft.PeftModel.from_pretrained(base, dir)`` loads fmlab's LoRA adapters too.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from fmlab.errors import ConfigError, DataError
from fmlab.peft.core import PeftMethod, Stage, get_record, register
from fmlab.peft.recipe import Recipe
from fmlab.peft.targets import get_module, is_within, set_module

ADAPTER = "default"
PEFT_PREFIX = "base_model.model."
_LORA_SEG = re.compile(r"\.(lora_[A-Za-z_]+)\.default(?=\.|$)")
LORA_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.MultiheadAttention)
INIT_CHOICES = (True, False, "gaussian")


@dataclass
class LoraOptions:
    r: int = 8
    alpha: float = 8
    dropout: float = 0.0
    init: bool | str = True
    use_rslora: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.r, int) or self.r < 1:
            raise ConfigError(f"lora: r must be a positive integer, got {self.r!r}")
        if not isinstance(self.alpha, (int, float)) or self.alpha <= 0:
            raise ConfigError(f"lora: alpha must be a positive number, got {self.alpha!r}")
        if not isinstance(self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"lora: dropout must be in [0, 1), got {self.dropout!r}")
        if self.init not in INIT_CHOICES:
            raise ConfigError(f"lora: init must be one of {INIT_CHOICES}, got {self.init!r}")


def _is_mha_out_proj(model: nn.Module, name: str) -> bool:
    parent, _, child = name.rpartition(".")
    if child != "out_proj":
        return False
    return isinstance(model.get_submodule(parent) if parent else model, nn.MultiheadAttention)


def lora_config(targets: list[str], opts: LoraOptions) -> Any:
    from peft import LoraConfig

    regex = "^(?:" + "|".join(re.escape(t) for t in targets) + ")$"
    return LoraConfig(
        r=opts.r, lora_alpha=opts.alpha, lora_dropout=opts.dropout, target_modules=regex,
        init_lora_weights=opts.init, use_rslora=opts.use_rslora, bias="none",
    )


@functools.cache
def _fixed_mha_class() -> type:
    """peft's LoRA MultiheadAttention with each update added once and an exact unmerge (see
    the module doc)."""
    from peft.tuners.lora.layer import MultiheadAttention as PeftMHA
    from peft.tuners.tuners_utils import check_adapters_to_merge

    class FixedLoraMultiheadAttention(PeftMHA):
        def merge(self, safe_merge: bool = False, adapter_names: list[str] | None = None) -> None:
            for name in check_adapters_to_merge(self, adapter_names):
                if name not in self.lora_A:
                    continue
                base = self.get_base_layer()
                out_lora = base.out_proj
                out_base = out_lora.get_base_layer()
                dtype = out_base.weight.dtype
                # Non-leaf merged tensors keep the graph to the LoRA factors (gradients flow).
                w_in = base.in_proj_weight.detach() + self.get_delta_weight(name).to(dtype)
                w_out = out_base.weight.detach() + out_lora.get_delta_weight(name).to(dtype)
                if safe_merge and not (torch.isfinite(w_in).all() and torch.isfinite(w_out).all()):
                    raise ValueError(f"NaNs in the merged weights of adapter {name!r}")
                if not self.merged_adapters:
                    self._fmlab_originals = (base.in_proj_weight, out_base.weight)
                del base.in_proj_weight
                base.in_proj_weight = w_in
                del out_base.weight
                out_base.weight = w_out
                out_lora.merged_adapters.append(name)
                self.merged_adapters.append(name)

        def unmerge(self) -> None:
            if not self.merged_adapters:
                return
            base = self.get_base_layer()
            out_lora = base.out_proj
            out_base = out_lora.get_base_layer()
            w_in, w_out = self.__dict__.pop("_fmlab_originals")
            del base.in_proj_weight
            base.register_parameter("in_proj_weight", w_in)
            del out_base.weight
            out_base.register_parameter("weight", w_out)
            self.merged_adapters.clear()
            out_lora.merged_adapters.clear()

    return FixedLoraMultiheadAttention


def _fix_mha_layers(model: nn.Module, targets: list[str]) -> None:
    from peft.tuners.lora.layer import MultiheadAttention as PeftMHA

    layers = [get_module(model, t) for t in targets]
    for m in layers:
        if type(m) is PeftMHA:
            m.__class__ = _fixed_mha_class()


@register
class Lora(PeftMethod):
    name = "lora"
    recipe = Recipe(lr=2e-3)
    Options = LoraOptions
    kind = "Linear, Conv or MultiheadAttention layer"

    def supports(self, name: str, module: nn.Module) -> bool:
        if isinstance(module, nn.MultiheadAttention):
            return bool(module._qkv_same_embed_dim)
        return isinstance(module, LORA_TYPES)

    def resolve_targets(self, model, patterns, exclude, opts):  # type: ignore[override]
        names = super().resolve_targets(model, patterns, exclude, opts)
        lone = [n for n in names if _is_mha_out_proj(model, n)]
        if lone and patterns is not None:
            raise ConfigError(
                f"lora: {lone[0]!r} is the out_proj of a MultiheadAttention, which peft cannot adapt "
                f"alone; target the attention module {lone[0].rpartition('.')[0]!r} instead")
        return [n for n in names if n not in lone]

    def inject(self, model: nn.Module, targets: list[str], opts: Any,
               info: dict[str, Any] | None) -> dict[str, Any]:
        from peft import inject_adapter_in_model

        rec = get_record(model)
        if rec is not None and any(s.method == "lora" for s in rec.stages):
            raise ConfigError("lora: this model already has a LoRA stage; one per model")
        for t in targets:
            m = get_module(model, t)
            if not self.supports(t, m):
                raise ConfigError(f"lora: cannot adapt {t!r} ({type(m).__name__})")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(opts.seed)
            inject_adapter_in_model(lora_config(targets, opts), model, adapter_name=ADAPTER)
        _fix_mha_layers(model, targets)
        return {}

    def adapter_params(self, model: nn.Module, stage: Stage) -> dict[str, nn.Parameter]:
        return {n: p for n, p in model.named_parameters()
                if ".lora_" in n and is_within(n, stage.targets)}

    def merge(self, model: nn.Module, stage: Stage) -> None:
        from peft.tuners.tuners_utils import BaseTunerLayer

        for t in stage.targets:
            layer = get_module(model, t)
            if not isinstance(layer, BaseTunerLayer):
                continue
            if hasattr(layer, "unload_and_optionally_merge_module"):  # MultiheadAttention
                plain = layer.unload_and_optionally_merge_module(
                    merge=True, safe_merge=False, adapter_names=None)
            else:
                layer.merge()
                plain = layer.get_base_layer()
            if t:
                set_module(model, t, plain)
        model.__dict__.pop("peft_config", None)

    # -- peft's file layout ----------------------------------------------------------------------
    def to_file(self, tensors: dict[str, Any]) -> dict[str, Any]:
        return {PEFT_PREFIX + _LORA_SEG.sub(r".\1", k): v for k, v in tensors.items()}

    def from_file(self, tensors: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for k, v in tensors.items():
            if not k.startswith(PEFT_PREFIX):
                raise DataError(f"LoRA key {k!r} lacks peft's prefix {PEFT_PREFIX!r}")
            k = k[len(PEFT_PREFIX):]
            out[re.sub(r"\.(lora_[A-Za-z_]+)(?=\.|$)", rf".\1.{ADAPTER}", k)] = v
        return out

    def config_json(self, stage: Stage) -> dict[str, Any] | None:
        cfg = lora_config(stage.targets, LoraOptions(**stage.options)).to_dict()
        cfg = {k: (sorted(v) if isinstance(v, set) else v) for k, v in cfg.items()}
        cfg["inference_mode"] = True
        return cfg

    def check_config(self, stage: Stage, cfg: dict[str, Any] | None, path: Any) -> None:
        if cfg is None:
            raise DataError(f"missing peft config {path}")
        if cfg.get("peft_type") != "LORA":
            raise DataError(f"{path}: peft_type is {cfg.get('peft_type')!r}, expected 'LORA'")
        want = LoraOptions(**stage.options)
        for key, val in (("r", want.r), ("lora_alpha", want.alpha),
                         ("use_rslora", want.use_rslora)):
            if cfg.get(key) != val:
                raise DataError(f"{path}: {key} is {cfg.get(key)!r} but fmlab_adapter.json says "
                                f"{val!r}")

