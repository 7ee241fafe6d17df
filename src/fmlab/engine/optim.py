"""Optimisers: AdamW, SGD and our own LARS, with the no-weight-decay parameter split.

Why the split matters: decaying norm scales, biases or a learned temperature pulls them toward
zero for no regularisation benefit (and a decayed ``logit_scale`` undoes CLIP's temperature), so
every recipe we reproduce (SimCLR, DINO, MAE, CLIP) excludes them; LARS also skips its layer-wise
adaptation for the same parameters.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from fmlab.engine.config import OptimConfig
from fmlab.errors import ConfigError

NO_DECAY_NAME_PARTS = ("temperature", "logit_scale", "logit_bias")

_NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
    *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),
)


def split_decay_params(model: nn.Module,
                       extra_no_decay: Iterable[str] = ()) -> tuple[list[str], list[str]]:
    """Names of trainable parameters that get weight decay, and those that do not.

    No decay: parameters of normalisation layers, biases, every parameter with ``ndim <= 1``,
    names containing ``temperature``/``logit_scale``/``logit_bias``, names listed by a submodule's
    ``no_weight_decay()`` (timm's convention, relative to that submodule) and ``extra_no_decay``.
    Frozen parameters (``requires_grad=False``) are in neither list.
    """
    skip = set(extra_no_decay)
    norm_params: set[str] = set()
    for mod_name, mod in model.named_modules():
        prefix = f"{mod_name}." if mod_name else ""
        if isinstance(mod, _NORM_TYPES):
            norm_params.update(prefix + n for n, _ in mod.named_parameters(recurse=False))
        nwd = getattr(mod, "no_weight_decay", None)
        if callable(nwd):
            skip.update(prefix + n for n in nwd())
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        leaf = name.rsplit(".", 1)[-1]
        excluded = (
            p.ndim <= 1
            or leaf == "bias"
            or name in norm_params
            or name in skip
            or any(part in name for part in NO_DECAY_NAME_PARTS)
        )
        (no_decay if excluded else decay).append(name)
    return decay, no_decay


def param_groups(model: nn.Module, weight_decay: float,
                 extra_no_decay: Iterable[str] = ()) -> list[dict]:
    """Two optimiser groups: decayed (LARS-adapted) and not (plain momentum SGD under LARS)."""
    params = dict(model.named_parameters())
    decay, no_decay = split_decay_params(model, extra_no_decay)
    groups = []
    if decay:
        groups.append({"params": [params[n] for n in decay], "weight_decay": weight_decay,
                       "decay": True, "lars_adapt": True})
    if no_decay:
        groups.append({"params": [params[n] for n in no_decay], "weight_decay": 0.0,
                       "decay": False, "lars_adapt": False})
    if not groups:
        raise ConfigError("the objective has no trainable parameters (all requires_grad=False)")
    return groups


class LARS(torch.optim.Optimizer):
    """Layer-wise Adaptive Rate Scaling (You et al. 2017) on top of momentum SGD.

    For each parameter ``w`` with gradient ``g`` in a group with ``lars_adapt=True``:
    ``u = g + wd * w``; ``trust = eta * ||w|| / ||u||`` (1 when either norm is 0); ``u *= trust``.
    Groups with ``lars_adapt=False`` (norms, biases) use ``u = g + wd * w`` unscaled. Then, as in
    torch SGD: ``buf = momentum * buf + u`` (``buf = u`` on the first step),
    ``w -= lr * (u + momentum * buf if nesterov else buf)``.
    """

    def __init__(self, params: Iterable, lr: float, momentum: float = 0.9,
                 weight_decay: float = 0.0, eta: float = 0.001, nesterov: bool = False) -> None:
        if lr < 0:
            raise ValueError(f"invalid lr {lr}")
        defaults = {"lr": lr, "momentum": momentum, "weight_decay": weight_decay, "eta": eta,
                    "nesterov": nesterov, "lars_adapt": True}
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            wd, mom, eta = group["weight_decay"], group["momentum"], group["eta"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                u = p.grad
                if wd != 0:
                    u = u.add(p, alpha=wd)
                if group["lars_adapt"]:
                    w_norm = torch.linalg.vector_norm(p)
                    u_norm = torch.linalg.vector_norm(u)
                    # torch.where keeps this on-device: no host sync per parameter
                    trust = torch.where((w_norm > 0) & (u_norm > 0), eta * w_norm / u_norm,
                                        torch.ones_like(w_norm))
                    u = u * trust
                if mom != 0:
                    state = self.state[p]
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = state["momentum_buffer"] = u.detach().clone()
                    else:
                        buf.mul_(mom).add_(u)
                    u = u.add(buf, alpha=mom) if group["nesterov"] else buf
                p.add_(u, alpha=-group["lr"])
        return loss


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """The optimiser named by ``cfg.name`` over :func:`param_groups` of ``model``."""
    groups = param_groups(model, cfg.weight_decay)
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps,
                                 weight_decay=cfg.weight_decay)
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay,
                               nesterov=cfg.nesterov and cfg.momentum > 0)
    if cfg.name == "lars":
        return LARS(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                    eta=cfg.lars_eta, nesterov=cfg.nesterov)
    raise ConfigError(f"optim.name: unknown optimiser {cfg.name!r}; choose adamw, sgd or lars")
