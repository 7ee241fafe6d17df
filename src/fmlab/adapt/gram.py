"""GRAM (Li et al., ICCV 2023, "Gradient-Regulated Meta-Prompt Learning for Generalizable
Vision-Language Models"): CoOp that starts from a meta-learnt context φ and passes every gradient
through a meta-learnt regulator ψ.

GRAM's code is unreleased, so the form of ψ is this project's choice (docs/methods.md,
docs/notes/issue20_formulas.md): ``ψ(g) = g ⊙ 2σ(h(g / rms(g)))`` with ``h`` a small per-row MLP
whose last layer starts at zero. So ψ starts as the identity (the meta-training then reduces
exactly to first-order MAML, which the tests check), can damp or amplify each coordinate, and
sees the gradient's direction pattern rather than its scale (raw prompt gradients are ~1e-3).

``fmlab adapt meta-train`` writes φ and ψ to a folder (:func:`save_gram_meta`); ``--methods gram
--meta META_DIR`` fits :class:`GRAM` from it. The folder also lists the content hashes of the
meta-training images, so a downstream test split that overlaps them can be refused.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn as nn

from fmlab.adapt.coop import FIT_CONSTRAINTS, CoOp, PromptLearner
from fmlab.adapt.registry import register_estimator
from fmlab.errors import ConfigError
from fmlab.utils.io import write_json

META_WEIGHTS = "gram_meta.safetensors"
META_INFO = "gram_meta.json"
META_HASHES = "image_hashes.json"


class GradientRegulator(nn.Module):
    """ψ(g) = g ⊙ 2σ(h(g / rms(g))), h: Linear(D, H) → ReLU → Linear(H, D) per context row.

    The last layer is zero-initialised, so a new regulator is the identity.

    Examples:
        >>> psi = GradientRegulator(8)
        >>> g = torch.randn(4, 8)
        >>> bool(torch.equal(psi(g), g))
        True
    """

    def __init__(self, dim: int, hidden: int = 64) -> None:
        super().__init__()
        self.dim, self.hidden = int(dim), int(hidden)
        self.h = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))
        nn.init.zeros_(self.h[2].weight)
        nn.init.zeros_(self.h[2].bias)

    def gate(self, g: torch.Tensor) -> torch.Tensor:
        """The per-coordinate factor 2σ(h(·)) in (0, 2)."""
        u = g / g.pow(2).mean().sqrt().clamp_min(1e-12)
        return 2.0 * torch.sigmoid(self.h(u))

    def forward(self, g: torch.Tensor) -> torch.Tensor:
        return g * self.gate(g)


@dataclass
class GramMeta:
    """A meta-trained initialisation: the context φ (n_ctx, D), the regulator ψ, where it came
    from (``info``) and the content hashes of the meta-training images."""

    ctx: torch.Tensor
    regulator: GradientRegulator
    info: dict[str, Any] = field(default_factory=dict)
    image_hashes: list[str] = field(default_factory=list)
    path: str | None = None


def save_gram_meta(folder: str | Path, ctx: torch.Tensor, regulator: GradientRegulator,
                   info: dict[str, Any], image_hashes: Sequence[str]) -> Path:
    """Write ``gram_meta.safetensors`` (φ and ψ), ``gram_meta.json`` and ``image_hashes.json``."""
    from fmlab.engine.checkpoint import write_safetensors

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {"ctx": ctx.detach().float().cpu().contiguous()}
    tensors.update({f"regulator.{k}": v.detach().float().cpu().contiguous()
                    for k, v in regulator.state_dict().items()})
    write_safetensors(tensors, folder / META_WEIGHTS)
    write_json(folder / META_INFO, {**info, "n_ctx": int(ctx.shape[0]), "dim": int(ctx.shape[1]),
                                    "hidden": regulator.hidden})
    write_json(folder / META_HASHES, sorted(set(image_hashes)))
    return folder


def load_gram_meta(folder: str | Path) -> GramMeta:
    """Read a folder written by :func:`save_gram_meta` (``fmlab adapt meta-train``).

    Raises:
        ConfigError: the folder or one of its files is missing or malformed (names it).
    """
    from safetensors.torch import load_file

    folder = Path(folder)
    for name in (META_WEIGHTS, META_INFO, META_HASHES):
        if not (folder / name).is_file():
            raise ConfigError(f"--meta {folder}: no {name} (write it with fmlab adapt meta-train)")
    try:
        info = json.loads((folder / META_INFO).read_text())
        hashes = json.loads((folder / META_HASHES).read_text())
        tensors = load_file(str(folder / META_WEIGHTS))
        ctx = tensors.pop("ctx")
        reg = GradientRegulator(int(info["dim"]), int(info["hidden"]))
        reg.load_state_dict({k.removeprefix("regulator."): v for k, v in tensors.items()})
    except (KeyError, ValueError, RuntimeError, OSError) as e:
        raise ConfigError(f"--meta {folder}: unreadable GRAM initialisation ({e})") from None
    return GramMeta(ctx, reg.eval(), info, list(hashes), str(folder))


@register_estimator("gram")
class GRAM(CoOp):
    """CoOp from a meta-learnt context φ with its gradients passed through the meta-learnt ψ.

    ``fit(X, y)``: as :class:`~fmlab.adapt.coop.CoOp` (image embeddings of a frozen image-text
    model). ``fmlab adapt --clip-model M --meta META_DIR --methods gram`` provides the inputs.

    Args:
        model: the frozen image-text model (the text tower must be the meta-training one's).
        class_names: one name per class.
        meta: a :class:`GramMeta` or its folder.
        regulate: pass gradients through ψ (False: φ only, the ablation).
        lr, momentum, weight_decay, epochs, batch_size, warmup_epochs, warmup_lr, max_steps,
            seed: as CoOp (the same defaults).

    Examples:
        >>> GRAM(model=None, class_names=["cat"], meta="META").get_params()["regulate"]
        True
    """

    requires = ("model", "class_names", "meta")
    _parameter_constraints: ClassVar[dict[str, list]] = {
        "meta": [GramMeta, str, Path],
        "regulate": ["boolean"],
        **FIT_CONSTRAINTS,
    }

    def __init__(self, model, class_names: Sequence[str], meta: GramMeta | str | Path,
                 regulate: bool = True, lr: float = 0.002, epochs: int = 50, batch_size: int = 32,
                 momentum: float = 0.9, weight_decay: float = 5e-4, warmup_epochs: int = 1,
                 warmup_lr: float = 1e-5, max_steps: int | None = None, seed: int = 0) -> None:
        self.model = model
        self.class_names = class_names
        self.meta = meta
        self.regulate = regulate
        self._store_fit_arguments(lr, epochs, batch_size, momentum, weight_decay, warmup_epochs,
                                  warmup_lr, max_steps, seed)

    def _make_learner(self, g: torch.Generator) -> nn.Module:
        meta = self.meta if isinstance(self.meta, GramMeta) else load_gram_meta(self.meta)
        n_ctx, dim = meta.ctx.shape
        learner = PromptLearner(self.model, list(self.class_names), int(n_ctx), False, "end",
                                None, g)
        if learner.ctx.shape[1] != dim:
            raise ConfigError(f"--meta {meta.path}: its context is {dim}-d but the model's text "
                              f"tower embeds tokens in {learner.ctx.shape[1]} dimensions; "
                              "meta-train with the same --clip-model")
        with torch.no_grad():
            learner.ctx.copy_(meta.ctx.to(learner.ctx))
        self.meta_ = meta
        self.regulator_ = meta.regulator.to(learner.ctx.device)
        return learner

    def _regulate_gradients(self) -> None:
        ctx = self.learner_.ctx
        if self.regulate and ctx.grad is not None:
            with torch.no_grad():
                ctx.grad.copy_(self.regulator_(ctx.grad))

    def _learner_hyperparameters(self) -> dict:
        return {"n_ctx": self.learner_.n_ctx, "meta": self.meta_.path, "regulate": self.regulate,
                "meta_steps": self.meta_.info.get("steps")}


@register_estimator("gram_phi")
class GRAMPhi(GRAM):
    """GRAM's ablation: CoOp from the meta-learnt context φ with plain gradients (no ψ).

    Examples:
        >>> GRAMPhi(model=None, class_names=["cat"], meta="META").get_params()["regulate"]
        False
    """

    def __init__(self, model, class_names: Sequence[str], meta: GramMeta | str | Path,
                 regulate: bool = False, lr: float = 0.002, epochs: int = 50, batch_size: int = 32,
                 momentum: float = 0.9, weight_decay: float = 5e-4, warmup_epochs: int = 1,
                 warmup_lr: float = 1e-5, max_steps: int | None = None, seed: int = 0) -> None:
        super().__init__(model, class_names, meta, regulate, lr, epochs, batch_size, momentum,
                         weight_decay, warmup_epochs, warmup_lr, max_steps, seed)
