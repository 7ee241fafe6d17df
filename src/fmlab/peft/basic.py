"""The three baselines every PEFT comparison needs: ``full``, ``linear`` (head only), ``bitfit``.

``full`` trains every parameter (or, with targets, every parameter of the targeted modules: partial
fine-tuning). ``linear`` trains only the head: the module named ``head`` unless ``head=`` says
otherwise. ``bitfit`` trains every bias (parameters named ``bias`` or ``*_bias``, e.g.
``MultiheadAttention.in_proj_bias``) and every parameter of a normalisation layer (BatchNorm,
LayerNorm, GroupNorm, InstanceNorm, RMSNorm), over the whole model or under the targets.
"""

from __future__ import annotations

from torch import nn

from fmlab.errors import ConfigError
from fmlab.peft.core import PeftMethod, Stage, register
from fmlab.peft.recipe import Recipe
from fmlab.peft.targets import is_within

NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,
    nn.LayerNorm,
    nn.GroupNorm,
) + ((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ())


def _any_params(name: str, module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


class _SubtreeMethod(PeftMethod):
    """Targets are optional sub-trees; ``None`` means the whole model."""

    kind = "module with parameters"

    def supports(self, name: str, module: nn.Module) -> bool:
        return _any_params(name, module)

    def resolve_targets(self, model, patterns, exclude, opts):  # type: ignore[override]
        if patterns is None:
            return [""]
        return super().resolve_targets(model, patterns, exclude, opts)


@register
class Full(_SubtreeMethod):
    """Full fine-tuning (of the whole model, or of the targeted modules only)."""

    name = "full"
    recipe = Recipe(lr=1e-4, weight_decay=0.05)
    trains_norm_statistics = True

    def adapter_params(self, model: nn.Module, stage: Stage) -> dict[str, nn.Parameter]:
        return {n: p for n, p in model.named_parameters()
                if is_within(n.rpartition(".")[0], stage.targets)}


@register
class Linear(PeftMethod):
    """Linear probing: train the head only (the module ``head``, or the ``head=`` patterns)."""

    name = "linear"
    uses_targets = False
    recipe = Recipe(lr=1e-2)

    def default_head(self, model: nn.Module) -> str:
        named = dict(model.named_modules())
        if "head" not in named or named["head"] is None:
            raise ConfigError(
                f"peft method 'linear': {type(model).__name__} has no module named 'head'; "
                "pass head= with the pattern of the classifier to train"
            )
        return "head"


@register
class BitFit(_SubtreeMethod):
    """BitFit: biases plus normalisation-layer parameters."""

    name = "bitfit"
    recipe = Recipe(lr=3e-3)
    trains_norm_statistics = True

    def adapter_params(self, model: nn.Module, stage: Stage) -> dict[str, nn.Parameter]:
        out: dict[str, nn.Parameter] = {}
        for mod_name, module in model.named_modules():
            if not is_within(mod_name, stage.targets):
                continue
            is_norm = isinstance(module, NORM_TYPES)
            for pname, p in module.named_parameters(recurse=False):
                if is_norm or pname == "bias" or pname.endswith("_bias"):
                    out[f"{mod_name}.{pname}" if mod_name else pname] = p
        if not out:
            raise ConfigError(
                f"peft method 'bitfit': no bias or norm parameter under targets {stage.targets!r}"
            )
        return out
