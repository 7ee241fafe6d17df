"""CoOp (Zhou et al., IJCV 2022): learn M context vectors in the text tower's token-embedding
space; everything else stays frozen.

Prompt of class k: ``[SOS] v_1 … v_M CLASS_k . [EOS]`` (class token at the ``end``; ``middle``
puts half the context on each side, ``front`` puts the class first). With MiniLM the vectors are
inserted after [CLS] in BERT's word-embedding space (mean pooling over the longer mask); with
open_clip after SOS, pooled at the shifted EOT. One shared context, or one per class (``csc``).

Because the image tower is frozen, ``fit`` takes *image embeddings in the joint space*
(``ImageTextModel.encode_image`` of the training images, which may be cached like any feature)
and only the text side runs per step, as in CoOp. Scores are ``s · cos(x, g(t_k))`` with the
model's own (frozen) logit scale ``s``. Optimiser: SGD (momentum 0.9, wd 5e-4), lr 0.002 with
cosine decay, the first epoch at a constant 1e-5 (CoOp's warmup), batch 32.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from numbers import Integral, Real
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions

from fmlab.adapt.base import Estimator, InputError, views_as_samples
from fmlab.adapt.registry import register_estimator
from fmlab.errors import ConfigError

Position = Literal["end", "middle", "front"]


class PromptLearner(nn.Module):
    """Learnable context + frozen class-name token embeddings → class text embeddings (C, D)."""

    def __init__(self, model, class_names: Sequence[str], n_ctx: int = 16, csc: bool = False,
                 position: Position = "end", ctx_init: str | None = None,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        if position not in ("end", "middle", "front"):
            raise ConfigError(f"class_token_position: {position!r} is not one of end, middle, front")
        if n_ctx < 1 and ctx_init is None:
            raise ConfigError(f"n_ctx: {n_ctx} must be >= 1")
        tower = model.text
        self.model = model
        self.position = position
        names = [str(n).replace("_", " ") for n in class_names]
        ids, end = tower.prompt_plan([f"{n}." for n in names])
        device = model.logit_scale.device
        with torch.no_grad():
            emb = tower.token_embedding(ids.to(device)).float()
        self.register_buffer("class_emb", emb, persistent=False)
        self.register_buffer("end", end.to(device), persistent=False)
        self.name_len = (end - 2).tolist()  # tokens between SOS and "."
        dim = emb.shape[-1]
        if ctx_init:
            init_ids, init_end = tower.prompt_plan([ctx_init])
            with torch.no_grad():
                vecs = tower.token_embedding(init_ids[0, 1:int(init_end[0])].to(device)).float()
            n_ctx = vecs.shape[0]
            ctx = vecs.unsqueeze(0).repeat(len(names), 1, 1) if csc else vecs
        else:
            shape = (len(names), n_ctx, dim) if csc else (n_ctx, dim)
            ctx = torch.randn(shape, generator=generator) * 0.02
        self.n_ctx = n_ctx
        self.ctx = nn.Parameter(ctx.to(device).clone())

    def prompts(self, ctx: torch.Tensor | None = None, rows: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Token embeddings (C, L+M, D) and each prompt's EOS position.

        Args:
            ctx: context vectors to use instead of the learner's own (GRAM's meta-training
                evaluates the prompts at an updated context θ' = θ − α·ψ(g)).
            rows: only these classes' prompts (a meta-task's classes among all prototypes).
        """
        ctx = self.ctx if ctx is None else ctx
        emb, end = self.class_emb, self.end
        names = self.name_len
        if rows is not None:
            emb, end = emb[rows], end[rows]
            names = [self.name_len[int(r)] for r in rows]
            if ctx.ndim == 3:
                ctx = ctx[rows]
        C = emb.shape[0]
        ctx = ctx if ctx.ndim == 3 else ctx.unsqueeze(0).expand(C, -1, -1)
        emb = emb.to(ctx.dtype)
        if self.position == "end":
            seq = torch.cat([emb[:, :1], ctx, emb[:, 1:]], dim=1)
        else:
            rows_out = []
            half = self.n_ctx // 2
            for c in range(C):
                n = names[c]
                sos, name, rest = emb[c, :1], emb[c, 1:1 + n], emb[c, 1 + n:]
                if self.position == "front":
                    rows_out.append(torch.cat([sos, name, ctx[c], rest]))
                else:
                    rows_out.append(torch.cat([sos, ctx[c, :half], name, ctx[c, half:], rest]))
            seq = torch.stack(rows_out)
        return seq, end + self.n_ctx

    def forward(self, ctx: torch.Tensor | None = None,
                rows: torch.Tensor | None = None) -> torch.Tensor:
        """The (C, D) class embeddings in the joint space (see :meth:`prompts` for the args)."""
        seq, end = self.prompts(ctx, rows)
        return self.model.text_proj(self.model.text.forward_embeds(seq, end))


def _positive(kind: type) -> list:
    return [Interval(kind, 0, None, closed="neither")]


FIT_CONSTRAINTS: dict[str, list] = {
    "model": [HasMethods(["logit_scale_value"])],
    "class_names": ["array-like"],
    "lr": _positive(Real), "epochs": _positive(Integral), "batch_size": _positive(Integral),
    "momentum": [Interval(Real, 0, None, closed="left")],
    "weight_decay": [Interval(Real, 0, None, closed="left")],
    "warmup_epochs": [Interval(Integral, 0, None, closed="left")],
    "warmup_lr": [Interval(Real, 0, None, closed="left")],
    "max_steps": [Interval(Integral, 1, None, closed="left"), None],
    "seed": [Interval(Integral, None, None, closed="neither")],
}
"""The checks of the arguments CoOp, CoOpPhoto, ConES and GRAM share (model, names, schedule)."""


@register_estimator("coop")
class CoOp(Estimator):
    """Context optimisation on a frozen :class:`~fmlab.multimodal.ImageTextModel`.

    ``fit(X, y)``: ``X`` = the model's image embeddings (N, D) or (V, N, D) augmented views;
    labels index ``class_names``. In the few-shot sweep the model and the class names are
    workflow inputs (``requires``): ``fmlab adapt --clip-model`` provides both.

    Args:
        model: the frozen image-text model whose image embeddings are the features.
        class_names: one name per class (labels index them).
        n_ctx: context vectors (ignored with ``ctx_init``).
        csc: one context per class.
        class_token_position: ``"end"``, ``"middle"`` or ``"front"``.
        ctx_init: words whose embeddings initialise the context, or None.
        lr, momentum, weight_decay: SGD's.
        epochs, batch_size: the schedule.
        warmup_epochs, warmup_lr: CoOp's constant-lr warmup.
        max_steps: a cap on the optimiser steps, or None.
        seed: initialisation and shuffling seed.

    Examples:
        >>> CoOp(model=None, class_names=["cat", "dog"], epochs=2).get_params()["epochs"]
        2
    """

    views = "samples"
    requires = ("model", "class_names")
    _parameter_constraints: ClassVar[dict[str, list]] = {
        "n_ctx": [Interval(Integral, 0, None, closed="left")],
        "csc": ["boolean"],
        "class_token_position": [StrOptions({"end", "middle", "front"})],
        "ctx_init": [str, None],
        **FIT_CONSTRAINTS,
    }

    def __init__(self, model, class_names: Sequence[str], n_ctx: int = 16, csc: bool = False,
                 class_token_position: Position = "end", ctx_init: str | None = None,
                 lr: float = 0.002, epochs: int = 50, batch_size: int = 32,
                 momentum: float = 0.9, weight_decay: float = 5e-4, warmup_epochs: int = 1,
                 warmup_lr: float = 1e-5, max_steps: int | None = None, seed: int = 0) -> None:
        self.model = model
        self.class_names = class_names
        self.n_ctx = n_ctx
        self.csc = csc
        self.class_token_position = class_token_position
        self.ctx_init = ctx_init
        self._store_fit_arguments(lr, epochs, batch_size, momentum, weight_decay, warmup_epochs,
                                  warmup_lr, max_steps, seed)

    def _store_fit_arguments(self, lr: float, epochs: int, batch_size: int, momentum: float,
                             weight_decay: float, warmup_epochs: int, warmup_lr: float,
                             max_steps: int | None, seed: int) -> None:
        """Store the fitting procedure's arguments unchanged (scikit-learn's ``__init__`` rule),
        for CoOp and the methods that reuse its procedure."""
        self.lr = lr
        self.epochs = epochs
        self.batch_size = batch_size
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.warmup_epochs = warmup_epochs
        self.warmup_lr = warmup_lr
        self.max_steps = max_steps
        self.seed = seed

    def _fit(self, X, y, X_val, y_val) -> None:
        if X.ndim == 3:
            X, y = views_as_samples(X, y)
        if self.classes_.max() >= len(self.class_names):
            raise InputError(f"labels go up to {int(self.classes_.max())} but "
                             f"{type(self).__name__} has {len(self.class_names)} class names")
        y = torch.as_tensor(self.classes_)[y]  # the learner covers every class name
        g = torch.Generator().manual_seed(self.seed)
        frozen = [(p, p.requires_grad) for p in self.model.parameters()]
        was_training = self.model.training
        self.model.eval()
        for p, _ in frozen:
            p.requires_grad_(False)
        self.scale_ = float(self.model.logit_scale_value())
        try:
            self.learner_ = self._make_learner(g)
            total = self._train(X, y, g)
            # still in eval mode: a model handed over in train mode must not apply dropout here
            with torch.no_grad():
                self.text_weights_ = F.normalize(self.learner_().float(), dim=-1).cpu()
        finally:
            for p, req in frozen:
                p.requires_grad_(req)
            self.model.train(was_training)
        self.hyperparameters_ = {**self._learner_hyperparameters(), "lr": self.lr,
                                 "epochs": self.epochs, "steps": total,
                                 "batch_size": self.batch_size, "logit_scale": self.scale_}

    def _make_learner(self, g: torch.Generator) -> nn.Module:
        """The module whose output is the (C, D) class embeddings and whose parameters train."""
        return PromptLearner(self.model, list(self.class_names), self.n_ctx, self.csc,
                             self.class_token_position, self.ctx_init, g)

    def _learner_hyperparameters(self) -> dict:
        return {"n_ctx": self.learner_.n_ctx, "csc": self.csc,
                "class_token_position": self.class_token_position}

    def _lr_at(self, step: int, warm: int, total: int) -> float:
        if step < warm:
            return self.warmup_lr
        t = (step - warm) / max(total - warm, 1)
        return 0.5 * self.lr * (1 + math.cos(math.pi * t))

    def _train(self, X: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> int:
        """SGD on the learner's parameters (CoOp: the context vectors); returns the steps taken."""
        device = self.model.logit_scale.device
        Xn = F.normalize(X.float(), dim=-1).to(device)
        y = y.to(device)
        params = [p for p in self.learner_.parameters() if p.requires_grad]  # not the model's
        opt = torch.optim.SGD(params, lr=self.lr, momentum=self.momentum,
                              weight_decay=self.weight_decay)
        n = len(Xn)
        spe = max(1, math.ceil(n / self.batch_size))
        total = spe * self.epochs
        if self.max_steps:
            total = min(total, self.max_steps)
        warm = min(self.warmup_epochs * spe, total - 1) if total > 1 else 0
        self.losses_ = []
        step = 0
        while step < total:
            perm = torch.randperm(n, generator=g)
            for start in range(0, n, self.batch_size):
                if step >= total:
                    break
                idx = perm[start:start + self.batch_size].to(device)
                for group in opt.param_groups:
                    group["lr"] = self._lr_at(step, warm, total)
                logits = self.scale_ * Xn[idx] @ F.normalize(self.learner_(), dim=-1).T
                loss = F.cross_entropy(logits, y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                self._regulate_gradients()
                opt.step()
                self.losses_.append(float(loss.detach()))
                step += 1
        return total

    def _regulate_gradients(self) -> None:
        """Hook between ``backward`` and the optimiser step (GRAM rewrites the gradient here)."""

    def _scores(self, X: torch.Tensor) -> torch.Tensor:
        w = self.text_weights_[torch.as_tensor(self.classes_)].to(X.dtype)
        return self.scale_ * F.normalize(X, dim=-1) @ w.T

    #: the learnt context is class-agnostic, so it can name classes it never saw (base-to-new,
    #: cross-dataset); per-class parameters (ConES, ``csc=True``) cannot
    transfers_to_new_classes: ClassVar[bool] = True

    def for_classes(self, class_names: Sequence[str], zeroshot_weights: Any = None) -> CoOp:
        """This fitted estimator with its learnt context put in front of other class names:
        a fitted copy whose classes ``0..len(class_names)-1`` are ``class_names`` (base-to-new
        and cross-dataset evaluation; ``zeroshot_weights`` is unused here).

        Raises:
            fmlab.adapt.base.InputError: not fitted, or a class-specific context (``csc``).
        """
        if not hasattr(self, "learner_"):
            raise InputError(f"{type(self).__name__}.for_classes needs a fitted estimator")
        if not type(self).transfers_to_new_classes or self.learner_.ctx.ndim != 2:
            raise InputError(f"{type(self).__name__} learns per-class parameters "
                             f"(csc={getattr(self, 'csc', None)}); it cannot name unseen classes")
        new = copy.copy(self)
        new.class_names = list(class_names)
        learner = PromptLearner(self.model, new.class_names, self.learner_.n_ctx, False,
                                self.learner_.position, None, torch.Generator().manual_seed(0))
        with torch.no_grad():
            learner.ctx.copy_(self.learner_.ctx)
            was_training = self.model.training
            self.model.eval()
            try:
                new.text_weights_ = F.normalize(learner().float(), dim=-1).cpu()
            finally:
                self.model.train(was_training)
        new.learner_, new.classes_ = learner, np.arange(len(new.class_names))
        return new


def class_prompt_weights(model, class_names: Sequence[str], template: str = "a photo of a {}.") -> np.ndarray:
    """The hand-written-prompt baseline CoOp is compared with: normalised text embeddings."""
    with torch.no_grad():
        return F.normalize(model.encode_text([template.format(c) for c in class_names]).float(),
                           dim=-1).cpu().numpy()


@register_estimator("coop_photo")
class CoOpPhoto(CoOp):
    """CoOp whose context starts from the words "a photo of a" (CoOp's hand-crafted init).

    The baseline GRAM's meta-learnt start is compared with (GRAM's φ starts there too).

    Examples:
        >>> CoOpPhoto(model=None, class_names=["cat"]).get_params()["ctx_init"]
        'a photo of a'
    """

    def __init__(self, model, class_names: Sequence[str], n_ctx: int = 16, csc: bool = False,
                 class_token_position: Position = "end", ctx_init: str | None = "a photo of a",
                 lr: float = 0.002, epochs: int = 50, batch_size: int = 32,
                 momentum: float = 0.9, weight_decay: float = 5e-4, warmup_epochs: int = 1,
                 warmup_lr: float = 1e-5, max_steps: int | None = None, seed: int = 0) -> None:
        super().__init__(model, class_names, n_ctx, csc, class_token_position, ctx_init, lr,
                         epochs, batch_size, momentum, weight_decay, warmup_epochs, warmup_lr,
                         max_steps, seed)
