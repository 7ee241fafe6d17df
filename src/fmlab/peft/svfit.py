"""SVFit: train only the top-r singular values of each target weight (arXiv 2409.05926).

For a target weight read as a matrix W = U Σ Vᵀ, the top r singular triplets are kept and only
their singular values s ∈ R^r are trained; U_r, V_r and the residual W − U_r Σ_r V_rᵀ stay frozen:

    W(s) = (W − U_r diag(σ_r) V_rᵀ) + U_r diag(s) V_rᵀ  =  W + U_r diag(s − σ_r) V_rᵀ.

fmlab computes the right-hand form: the frozen original W is kept as is (no residual copy), and at
initialisation s = σ_r makes the update exactly zero, so the model's outputs are bit-identical to the
base model's. r is the smallest rank whose singular values hold ``energy`` (default 0.99) of Σσ², or
a fixed ``rank``; either way it is capped at min(out, in). Trainable parameters: r per matrix.

Implemented as a :mod:`torch.nn.utils.parametrize` parametrization of the weight, so it works on
any module that reads its weight attribute in forward: Linear, Conv1d/2d/3d (kernels read as
(out, in·k…) matrices) and ``nn.MultiheadAttention`` (its packed ``in_proj_weight`` and its
``out_proj.weight``). ``merge`` bakes W(s) into a plain weight.

The saved adapter holds the r values per matrix plus each base weight's sha256: the frozen factors
are recomputed from the base on load, and a base with different weights is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from fmlab.errors import ConfigError, ModelError
from fmlab.peft.core import PeftMethod, Stage, register
from fmlab.peft.recipe import Recipe
from fmlab.peft.svd import as_matrix, energy_rank, svd, tensor_sha256
from fmlab.peft.targets import get_module

CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass
class SVFitOptions:
    energy: float = 0.99
    rank: int | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.energy, (int, float)) and 0.0 < self.energy <= 1.0):
            raise ConfigError(f"svfit: energy must be in (0, 1], got {self.energy!r}")
        if self.rank is not None and (not isinstance(self.rank, int) or self.rank < 1):
            raise ConfigError(f"svfit: rank must be a positive integer, got {self.rank!r}")


class SingularValueDelta(nn.Module):
    """Parametrization W ↦ W + U diag(s − s₀) Vh, with only ``s`` trainable."""

    def __init__(self, u: Tensor, s0: Tensor, vh: Tensor, shape: torch.Size) -> None:
        super().__init__()
        # Derived from the base weight: recomputed on load, so not part of the state dict.
        self.register_buffer("u", u, persistent=False)
        self.register_buffer("vh", vh, persistent=False)
        self.register_buffer("s0", s0.clone(), persistent=False)
        self.s = nn.Parameter(s0.clone())
        self.shape = tuple(shape)

    def forward(self, weight: Tensor) -> Tensor:
        delta = (self.u * (self.s - self.s0)) @ self.vh
        return weight + delta.reshape(self.shape)


def weight_slots(module: nn.Module) -> list[tuple[str, str]]:
    """(relative module name, parameter name) pairs SVFit adapts inside a target module."""
    if isinstance(module, nn.MultiheadAttention):
        if module.in_proj_weight is not None:
            slots = [("", "in_proj_weight")]
        else:
            slots = [("", "q_proj_weight"), ("", "k_proj_weight"), ("", "v_proj_weight")]
        return slots + [("out_proj", "weight")]
    return [("", "weight")]


def _svfit_supports(name: str, module: nn.Module) -> bool:
    if isinstance(module, nn.MultiheadAttention):
        return True
    return isinstance(module, (nn.Linear, *CONV_TYPES)) and isinstance(
        getattr(module, "weight", None), torch.Tensor)


def _original(module: nn.Module, pname: str) -> Tensor:
    if parametrize.is_parametrized(module, pname):
        raise ConfigError(f"svfit: {pname!r} of {type(module).__name__} is already parametrized")
    return getattr(module, pname)


@register
class SVFit(PeftMethod):
    name = "svfit"
    recipe = Recipe(lr=3e-3)
    Options = SVFitOptions
    kind = "Linear, Conv or MultiheadAttention layer"

    def supports(self, name: str, module: nn.Module) -> bool:
        return _svfit_supports(name, module)

    def inject(self, model: nn.Module, targets: list[str], opts: Any,
               info: dict[str, Any] | None) -> dict[str, Any]:
        slots: list[dict[str, Any]] = []
        for t in targets:
            for rel, pname in weight_slots(get_module(model, t)):
                slots.append({"module": f"{t}.{rel}".strip(".") if rel else t, "param": pname})
        if info is not None:
            recorded = info.get("slots", [])
            if [(s["module"], s["param"]) for s in recorded] != [
                    (s["module"], s["param"]) for s in slots]:
                raise ModelError("svfit: the base model's layers differ from the adapter's slots")
            slots = recorded
        out = []
        for slot in slots:
            module = get_module(model, slot["module"])
            w = _original(module, slot["param"])
            matrix = as_matrix(w)
            digest = tensor_sha256(w)
            if info is not None:
                if list(w.shape) != slot["shape"]:
                    raise ModelError(
                        f"svfit: {slot['module']}.{slot['param']} has shape {list(w.shape)}, "
                        f"the adapter expects {slot['shape']}")
                if digest != slot["sha256"]:
                    raise ModelError(
                        f"svfit: base weight {slot['module']}.{slot['param']} differs from the one "
                        "the adapter was made on (its frozen singular vectors come from that weight)")
            u, s, vh = svd(matrix)
            if info is not None:
                r = int(slot["rank"])
            elif opts.rank is not None:
                r = min(opts.rank, s.numel())
            else:
                r = energy_rank(s, opts.energy)
            dt, dev = w.dtype, w.device
            p = SingularValueDelta(u[:, :r].to(dev, dt), s[:r].to(dev, dt),
                                   vh[:r].to(dev, dt), w.shape)
            parametrize.register_parametrization(module, slot["param"], p)
            out.append({"module": slot["module"], "param": slot["param"], "rank": r,
                        "shape": list(w.shape), "sha256": digest})
        return {"slots": out}

    def adapter_params(self, model: nn.Module, stage: Stage) -> dict[str, nn.Parameter]:
        refs = {}
        for slot in stage.info["slots"]:
            module = get_module(model, slot["module"])
            p = getattr(module.parametrizations, slot["param"])[0]
            refs[f"{slot['module']}.{slot['param']}.singular_values"] = p.s
        return refs

    def merge(self, model: nn.Module, stage: Stage) -> None:
        for slot in stage.info["slots"]:
            module = get_module(model, slot["module"])
            if parametrize.is_parametrized(module, slot["param"]):
                with torch.no_grad():
                    parametrize.remove_parametrizations(module, slot["param"],
                                                        leave_parametrized=True)
