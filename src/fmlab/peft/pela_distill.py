"""PELA, step 2: intermediate distillation of the compressed student against the frozen original.

The loss on a batch of unlabelled images (PELA's ``DeiT/engine.py``, without the task term):

    L = kd_alpha · (1/|F|) Σ_{l∈F} MSE(h_s^l, h_t^l)                      per-layer feature MSE
      + kd_beta · T² · KL(softmax(z_t/T) ‖ softmax(z_s/T))                 optional logits KL
      + inf_norm_weight · (1/|P|) Σ_{l∈P} (‖W₂W₁ − W_t‖_∞ − eps)²          weight perturbation

F are the feature layers (default: the PELA-compressed layers, whose outputs are compared with the
outputs of the same-named layers of the teacher), P the compressed layers, ‖·‖_∞ the largest
absolute entry of the matrix (``torch.norm(x, inf)`` in PELA's code), h and z module outputs and
model outputs. PELA's defaults: kd_alpha 1, kd_beta 0, inf_norm_weight 1, eps 0.

:class:`PELADistillLoss` follows fmlab's objective convention, ``loss, logs = loss_module(batch)``,
so the engine can run it; :func:`pela_distill` is a small loop built from it for scripts and tests.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fmlab.errors import ConfigError, DataError, ModelError
from fmlab.peft.pela import pela_layers
from fmlab.peft.svd import as_matrix
from fmlab.peft.targets import select_modules


def inf_norm_penalty(student: nn.Module, teacher: nn.Module, eps: float = 0.0) -> Tensor:
    """mean over PELA layers of (max |W₂W₁ − W_teacher| − eps)², differentiable in the factors."""
    pairs = pela_layers(student)
    if not pairs:
        raise ConfigError("inf_norm_penalty: the student has no PELA layer (apply 'pela' first)")
    terms = []
    for name, pair in pairs.items():
        w_t = _teacher_weight(teacher, name)
        diff = pair.product() - as_matrix(w_t).detach().to(pair[0].weight.dtype)
        terms.append((diff.abs().max() - eps) ** 2)
    return torch.stack(terms).mean()


def _teacher_weight(teacher: nn.Module, name: str) -> Tensor:
    try:
        layer = teacher.get_submodule(name)
    except AttributeError:
        raise ModelError(f"teacher has no layer {name!r} matching the student's PELA layer") from None
    w = getattr(layer, "weight", None)
    if not isinstance(w, Tensor):
        raise ModelError(f"teacher layer {name!r} ({type(layer).__name__}) has no weight")
    return w


def images_of(batch: Any) -> Tensor:
    """The image tensor of a batch: a tensor/array, the first item of a tuple, or ``batch['image']``."""
    if isinstance(batch, dict):
        for key in ("image", "images", "x"):
            if key in batch:
                return images_of(batch[key])
        raise DataError(f"batch dict has no 'image' key (keys: {sorted(batch)})")
    if isinstance(batch, (tuple, list)):
        if not batch:
            raise DataError("empty batch")
        return images_of(batch[0])
    if isinstance(batch, np.ndarray):
        return torch.from_numpy(batch)
    if isinstance(batch, Tensor):
        return batch
    raise DataError(f"cannot read images from a batch of type {type(batch).__name__}")


def _first_tensor(out: Any) -> Tensor:
    while isinstance(out, (tuple, list)):
        out = out[0]
    if not isinstance(out, Tensor):
        raise ModelError(f"a feature layer returned {type(out).__name__}, not a tensor")
    return out


class PELADistillLoss(nn.Module):
    """``loss, logs = PELADistillLoss(student, teacher)(batch)``; trains what the student trains.

    An engine objective (``fmlab.engine``): ``batch`` is an image tensor or a dict with
    ``"images"``; ``encoder`` is the student. The teacher is frozen (``requires_grad=False``) and
    stays in eval mode. So does the student unless ``student_train_mode=True``: only the factors
    learn, and BatchNorm statistics and dropout stay as in the teacher so the matched features are
    comparable. ``feature_layers``: patterns of the layers whose outputs are matched (default: every
    PELA layer of the student); each must exist in the teacher under the same name.
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        *,
        feature_layers: str | Sequence[str] | None = None,
        kd_alpha: float = 1.0,
        kd_beta: float = 0.0,
        temperature: float = 1.0,
        inf_norm_weight: float = 1.0,
        inf_norm_eps: float = 0.0,
        student_train_mode: bool = False,
    ) -> None:
        super().__init__()
        for key, val in (("kd_alpha", kd_alpha), ("kd_beta", kd_beta),
                         ("inf_norm_weight", inf_norm_weight)):
            if val < 0:
                raise ConfigError(f"PELADistillLoss: {key} must be >= 0, got {val!r}")
        if temperature <= 0:
            raise ConfigError(f"PELADistillLoss: temperature must be > 0, got {temperature!r}")
        if student is teacher:
            raise ConfigError("PELADistillLoss: the teacher must be a separate (uncompressed) model")
        self.student = student
        self.teacher = teacher.eval().requires_grad_(False)
        if feature_layers is None:
            names = list(pela_layers(student))
            if not names and kd_alpha > 0:
                raise ConfigError("PELADistillLoss: the student has no PELA layer; pass "
                                  "feature_layers= or apply 'pela' first")
        else:
            names = select_modules(student, feature_layers, what="feature_layers")
        teacher_names = dict(teacher.named_modules())
        for n in names:
            if n not in teacher_names:
                raise ModelError(f"PELADistillLoss: feature layer {n!r} is not in the teacher")
        self.feature_layers = names
        self.kd_alpha, self.kd_beta, self.temperature = kd_alpha, kd_beta, temperature
        self.inf_norm_weight, self.inf_norm_eps = inf_norm_weight, inf_norm_eps
        self.student_train_mode = student_train_mode
        self.train(self.training)

    @property
    def encoder(self) -> nn.Module:
        """What the engine exports at the end of a run: the compressed student."""
        return self.student

    def train(self, mode: bool = True) -> PELADistillLoss:
        super().train(mode)
        self.student.train(mode and self.student_train_mode)
        self.teacher.eval()
        return self

    def _run(self, model: nn.Module, x: Tensor) -> tuple[Any, list[Tensor]]:
        feats: list[Tensor] = []
        handles = [model.get_submodule(n).register_forward_hook(
            lambda _m, _i, out: feats.append(_first_tensor(out))) for n in self.feature_layers]
        try:
            out = model(x)
        finally:
            for h in handles:
                h.remove()
        return out, feats

    def forward(self, batch: Any) -> tuple[Tensor, dict[str, float]]:
        x = images_of(batch)
        with torch.no_grad():
            t_out, t_feats = self._run(self.teacher, x)
        s_out, s_feats = self._run(self.student, x)
        logs: dict[str, float] = {}
        loss = _first_tensor(s_out).new_zeros(())
        if self.feature_layers and self.kd_alpha > 0:
            if len(s_feats) != len(t_feats):
                raise ModelError("PELADistillLoss: a feature layer ran a different number of times "
                                 "in student and teacher")
            feat = torch.stack([F.mse_loss(s, t.detach()) for s, t in zip(s_feats, t_feats)]).mean()
            loss = loss + self.kd_alpha * feat
            logs["feature_mse"] = float(feat.detach())
        if self.kd_beta > 0:
            tau = self.temperature
            zs, zt = _first_tensor(s_out), _first_tensor(t_out).detach()
            kl = F.kl_div(F.log_softmax(zs / tau, -1), F.log_softmax(zt / tau, -1),
                          log_target=True, reduction="batchmean") * tau * tau
            loss = loss + self.kd_beta * kl
            logs["logits_kl"] = float(kl.detach())
        if self.inf_norm_weight > 0:
            reg = inf_norm_penalty(self.student, self.teacher, self.inf_norm_eps)
            loss = loss + self.inf_norm_weight * reg
            logs["inf_norm"] = float(reg.detach())
        logs["loss"] = float(loss.detach())
        return loss, logs


def pela_distill(
    student: nn.Module,
    teacher: nn.Module,
    images_iterable: Iterable[Any],
    steps: int,
    *,
    lr: float = 1e-4,
    weight_decay: float = 0.0,
    seed: int = 0,
    **loss_options: Any,
) -> list[dict[str, float]]:
    """Train the student's trainable parameters for ``steps`` AdamW steps of :class:`PELADistillLoss`.

    The engine runs the steps (:class:`fmlab.engine.Trainer`, ``run_dir=None``): the batches of
    ``images_iterable`` (see :func:`images_of`) are gathered into one in-memory source, and each
    step draws a batch of the first batch's size from seeded, shuffled epochs over it. An iterable
    that can be read only once (a generator) gives at most as many steps as it yielded batches,
    as before. The caller's random state and the student's train/eval mode are left as they were.

    Args:
        student: the PELA-compressed model (its trainable parameters are trained).
        teacher: the uncompressed original (frozen).
        images_iterable: batches of images (tensors, arrays, tuples or dicts).
        steps: optimiser steps (>= 1).
        lr: AdamW learning rate (constant).
        weight_decay: AdamW weight decay (not on norms, biases and 1-D parameters).
        seed: seed of the batch order.
        **loss_options: :class:`PELADistillLoss` options (``kd_alpha``, ``kd_beta``,
            ``temperature``, ``inf_norm_weight``, ``inf_norm_eps``, ``feature_layers``,
            ``student_train_mode``).

    Returns:
        One log dict per step (``loss`` and the loss's terms).
    """
    from fmlab.engine import DistInfo, OptimConfig, ScheduleConfig, TensorSource, Trainer, TrainerConfig

    if not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"pela_distill: steps must be a positive integer, got {steps!r}")
    one_pass = iter(images_iterable) is images_iterable
    batches = [images_of(b) for b in images_iterable]
    if not batches:
        raise DataError("pela_distill: images_iterable yielded no batch")
    was_training = student.training
    loss_fn = PELADistillLoss(student, teacher, **loss_options)
    if not any(p.requires_grad for p in student.parameters()):
        raise ConfigError("pela_distill: the student has no trainable parameter")
    device = next(student.parameters()).device
    images = torch.cat([b.to(device) for b in batches])
    cfg = TrainerConfig(max_steps=min(steps, len(batches)) if one_pass else steps,
                        batch_size=len(batches[0]), seed=int(seed), log_every=1, progress=False,
                        tensorboard=False, device=str(device))
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            res = Trainer(loss_fn, TensorSource(images), cfg,
                          OptimConfig(lr=lr, weight_decay=weight_decay), ScheduleConfig(name="constant"),
                          run_dir=None, dist=DistInfo()).fit()
    finally:
        student.train(was_training)
    return [{"loss": float(r["loss"]), **r.get("logs", {})} for r in res.history if "loss" in r]


def prepare_pela_finetune(model: nn.Module, apply: Any, ctx: Any) -> bool:
    """PELA's fine-tuning preparation: compress, distil, then choose what the run trains.

    1. ``apply(model)`` compresses the target layers (the original is kept as the teacher);
    2. with ``distill_steps > 0``, :class:`PELADistillLoss` trains the factors against the teacher
       on the unlabelled images ``ctx.unlabelled()`` through ``ctx.fit`` (learning rate
       ``distill_lr``, 10% warmup, no augmentation); its log goes to ``distill_metrics.jsonl``;
    3. ``pela_finetune=full`` then makes the whole compressed model trainable (as in PELA),
       ``factors`` keeps only the factors (and the head) trainable.

    Args:
        model: the base model with its task head.
        apply: applies PELA with the run's targets and options.
        ctx: the workflow's :class:`~fmlab.peft.recipe.FinetuneContext`.

    Returns:
        Whether ``bn_stats=auto`` updates BatchNorm statistics: True for ``pela_finetune=full``.
    """
    import copy
    import dataclasses
    import time

    from fmlab.data.recipes import TrainTransform
    from fmlab.engine.config import OptimConfig, ScheduleConfig
    from fmlab.peft.core import apply as apply_method

    s = ctx.settings
    teacher = copy.deepcopy(model)
    apply(model)
    model.to(ctx.device)
    if s.distill_steps > 0:
        t0 = time.perf_counter()
        images = ctx.unlabelled()
        trainer = dataclasses.replace(s.trainer, max_steps=s.distill_steps,
                                      batch_size=min(s.distill_batch_size, len(images)))
        result = ctx.fit(PELADistillLoss(model, teacher.to(ctx.device)), images, None, trainer,
                         OptimConfig(lr=s.distill_lr),
                         ScheduleConfig(warmup_steps=max(1, s.distill_steps // 10)),
                         TrainTransform(model.preprocess, "none"))
        ctx.write_history("distill_metrics.jsonl", result.history)
        ctx.seconds["distill"] = time.perf_counter() - t0
    del teacher
    if s.pela_finetune == "full":
        apply_method(model, "full", head=ctx.head)
    return s.pela_finetune == "full"
