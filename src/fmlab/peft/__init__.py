"""Parameter-efficient fine-tuning: weight-space adapters and their save/load.

    import fmlab.peft as fp
    model = fp.apply(model, "lora", targets=["*qkv", "*fc1"], r=8, alpha=16, head="head")
    fp.trainable_parameters(model)            # what the optimiser will see
    fp.save_adapter(model, "out/adapter")     # safetensors + JSON
    fresh = fp.load_adapter(make_base(), "out/adapter")   # same outputs as ``model``
    fp.merge(model)                           # fold LoRA / SVFit into plain weights

Methods (``fmlab.peft.METHODS``, a :class:`fmlab.registry.Registry`): ``full``, ``linear``,
``bitfit``, ``lora`` (through Hugging Face peft), ``svfit``, ``pela`` (+ :func:`pela_distill`),
``vpt``. Target patterns: see :mod:`fmlab.peft.targets` (fnmatch on full module names, ``re:``
for regular expressions). Each method is one module here; a new one is a
:class:`~fmlab.peft.core.PeftMethod` subclass with ``@register``. A class that also declares a
:class:`Recipe` (and, if it trains norm layers, ``trains_norm_statistics = True``) is a method of
``fmlab finetune`` with no other edit (see :mod:`fmlab.peft.recipe`).
"""

from fmlab.peft import basic, lora, pela, svfit, vpt  # noqa: F401  (register the methods)
from fmlab.peft.core import (
    METHODS,
    PeftMethod,
    adapter_stages,
    apply,
    merge,
    register,
    trainable_parameters,
)
from fmlab.peft.io import init_from_adapter, load_adapter, save_adapter
from fmlab.peft.pela import LowRankPair, parameter_savings, pela_layers
from fmlab.peft.pela_distill import PELADistillLoss, inf_norm_penalty, pela_distill
from fmlab.peft.recipe import FinetuneContext, Recipe

__all__ = [
    "METHODS",
    "FinetuneContext",
    "LowRankPair",
    "PELADistillLoss",
    "PeftMethod",
    "Recipe",
    "adapter_stages",
    "apply",
    "inf_norm_penalty",
    "init_from_adapter",
    "load_adapter",
    "merge",
    "parameter_savings",
    "pela_distill",
    "pela_layers",
    "register",
    "save_adapter",
    "trainable_parameters",
]
