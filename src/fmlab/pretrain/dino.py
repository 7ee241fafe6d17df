"""DINO: self-distillation with an EMA teacher, centring, sharpening and multi-crop.

Student: P_s = softmax(g_s(f_s(x)) / tau_s) for every view (global and local).
Teacher: P_t = softmax((g_t(f_t(x)) - c) / tau_t), detached, global views only.
Loss: mean over pairs (teacher view a, student view b), a != b, of -sum P_t(a) log P_s(b).
Centre: c <- m_c c + (1 - m_c) mean_batch(g_t) (all-reduced over ranks), m_c = 0.9.
Teacher: theta_t <- m theta_t + (1 - m) theta_s, m cosine from 0.996 to 1 over training.
tau_t warms up linearly from ``warmup_teacher_temp`` to ``teacher_temp`` over
``teacher_temp_warmup_steps`` (DINO's code default is no warm-up at 0.04/0.04; its help text
and lightly use 30 epochs from 0.04 to 0.07).

Optional KoLeo (DINOv2): -mean_i log min_{j != i} ||z_i - z_j|| on the L2-normalised student
encoder features of each global view, weighted by ``koleo_weight``; it spreads features apart.

``use_bn`` adds BatchNorm to the head's hidden layers (DINO's ``use_bn_in_head``). Without it a
short run from a random ResNet-20 settled where every image gives about the same head output, the
centred teacher is uniform and the loss sits at log(out_dim): on CIFAR-10 the loss stayed at 6.91
(K = 1,024) for 150 steps at lr 5e-4 and at 2e-3, and the kNN monitor did not move; with BN it
fell (6.56 at lr 2e-3) and kNN rose from 0.32 to 0.35 (docs/benchmarks.md).

Optional iBOT MIM term (``ibot_weight`` > 0, ViT encoders only; :mod:`fmlab.pretrain.ibot`):
the student sees masked global views and matches the teacher's patch-token distributions on the
masked positions. ``ibot_weight=1`` with ``koleo_weight=0.1`` is the DINOv2 / RAD-DINO recipe
(``configs/pretrain/ibot_eurosat.yaml``); with both 0 this is plain DINO.

``freeze_last_layer_steps`` drops the last layer's gradient for the first steps (DINO: one
epoch; default 0 here because the engine counts steps, not epochs).

CPU-sized default head: out_dim 2048 (DINO: 65536), hidden 2048, bottleneck 256, 3 layers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fmlab.errors import ConfigError, DataError
from fmlab.pretrain import _dist
from fmlab.pretrain._ema import cosine_momentum, frozen_copy, momentum_update_
from fmlab.pretrain.base import Objective, register_objective, require
from fmlab.pretrain.heads import DINOHead
from fmlab.pretrain.ibot import ibot_loss, ibot_masks, masked_vit_tokens

__all__ = ["DINO", "dino_loss", "koleo_loss"]


def dino_loss(student_out: Sequence[Tensor], teacher_out: Sequence[Tensor], center: Tensor,
              student_temp: float, teacher_temp: float) -> Tensor:
    """Cross-entropy between centred, sharpened teacher and student outputs of different views.

    ``student_out[i]`` and ``teacher_out[i]`` must be the same (global) view for
    ``i < len(teacher_out)``; pairs with equal index are skipped.

    Args:
        student_out: head outputs (N, K) of every view (global first).
        teacher_out: head outputs (N, K) of the global views.
        center: (1, K) running centre subtracted from the teacher's outputs.
        student_temp: student temperature.
        teacher_temp: teacher temperature (sharper: smaller).

    Returns:
        The mean cross-entropy over all (teacher view, other student view) pairs.

    Examples:
        >>> import torch
        >>> s = [torch.randn(4, 16) for _ in range(3)]
        >>> t = [torch.randn(4, 16) for _ in range(2)]
        >>> loss = dino_loss(s, t, torch.zeros(1, 16), 0.1, 0.04)
        >>> loss.ndim, bool(loss > 0)
        (0, True)
    """
    if len(student_out) < 2 or not teacher_out:
        raise DataError("DINO needs at least two student views and one teacher view")
    log_ps = [F.log_softmax(s.float() / student_temp, dim=-1) for s in student_out]
    pts = [F.softmax((t.detach().float() - center) / teacher_temp, dim=-1)
           for t in teacher_out]
    total, pairs = 0.0, 0
    for a, pt in enumerate(pts):
        for b, log_p in enumerate(log_ps):
            if a == b:
                continue
            total = total + (-(pt * log_p).sum(dim=-1)).mean()
            pairs += 1
    return total / pairs


def koleo_loss(x: Tensor, eps: float = 1e-8) -> Tensor:
    """Kozachenko-Leonenko entropy term: -mean log(nearest-neighbour distance) of normalised x.

    Args:
        x: (N, D) features, N >= 2.
        eps: added inside the log and the normalisation.

    Returns:
        The scalar loss: lower when the points are spread out.

    Examples:
        >>> import torch
        >>> crowded = torch.ones(4, 4) + 0.01 * torch.eye(4)
        >>> bool(koleo_loss(torch.eye(4)) < koleo_loss(crowded))
        True
    """
    if x.shape[0] < 2:
        raise DataError("KoLeo needs at least two samples")
    z = F.normalize(x.float(), dim=-1, eps=eps)
    d = torch.cdist(z, z)
    d = d + torch.diag(torch.full((z.shape[0],), float("inf"), device=z.device, dtype=z.dtype))
    return -torch.log(d.min(dim=1).values + eps).mean()


@register_objective("dino")
class DINO(Objective):
    """DINO on ``batch["global_views"]`` (two) and optional ``batch["local_views"]``."""

    def __init__(self, encoder: nn.Module, feature_dim: int | None = None, out_dim: int = 2048,
                 hidden_dim: int = 2048, bottleneck_dim: int = 256, head_layers: int = 3,
                 norm_last_layer: bool = True, student_temp: float = 0.1,
                 teacher_temp: float = 0.04, warmup_teacher_temp: float = 0.04,
                 teacher_temp_warmup_steps: int = 0, center_momentum: float = 0.9,
                 teacher_momentum: float = 0.996, koleo_weight: float = 0.0,
                 freeze_last_layer_steps: int = 0, use_bn: bool = False,
                 ibot_weight: float = 0.0, ibot_mask_prob: float = 0.5,
                 ibot_mask_ratio: tuple[float, float] = (0.1, 0.5)) -> None:
        super().__init__()
        for name, t in (("student_temp", student_temp), ("teacher_temp", teacher_temp),
                        ("warmup_teacher_temp", warmup_teacher_temp)):
            if t <= 0:
                raise ConfigError(f"{name} must be > 0, got {t}")
        if not 0.0 <= teacher_momentum <= 1.0 or not 0.0 <= center_momentum <= 1.0:
            raise ConfigError(f"momenta must be in [0, 1], got teacher_momentum="
                              f"{teacher_momentum}, center_momentum={center_momentum}")
        self._set_encoder(encoder, feature_dim)
        self.head = DINOHead(self.feature_dim, out_dim, hidden_dim, bottleneck_dim, head_layers,
                             norm_last_layer, use_bn)
        self.teacher_encoder = frozen_copy(self.encoder)
        self.teacher_head = frozen_copy(self.head)
        self.student_temp, self.teacher_temp = float(student_temp), float(teacher_temp)
        self.warmup_teacher_temp = float(warmup_teacher_temp)
        self.teacher_temp_warmup_steps = int(teacher_temp_warmup_steps)
        self.center_momentum, self.base_teacher_momentum = center_momentum, teacher_momentum
        self.teacher_momentum = float(teacher_momentum)
        self.koleo_weight = float(koleo_weight)
        self.freeze_last_layer_steps = int(freeze_last_layer_steps)
        self.register_buffer("center", torch.zeros(1, out_dim))
        self._init_ibot(ibot_weight, ibot_mask_prob, ibot_mask_ratio, out_dim)
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def _init_ibot(self, weight: float, mask_prob: float, ratio: tuple[float, float],
                   out_dim: int) -> None:
        self.ibot_weight, self.ibot_mask_prob = float(weight), float(mask_prob)
        self.ibot_mask_ratio = (float(ratio[0]), float(ratio[1]))
        if self.ibot_weight <= 0:
            return
        if not hasattr(self.encoder, "patch_embed") or not hasattr(self.encoder, "blocks"):
            raise ConfigError(f"ibot_weight > 0 needs a ViT encoder (patch tokens), got "
                              f"{type(self.encoder).__name__}")
        ibot_masks(1, 4, self.ibot_mask_prob, self.ibot_mask_ratio)  # validates the settings
        self.mask_token = nn.Parameter(torch.zeros(1, 1, self.encoder.embed_dim))
        self.register_buffer("center_patch", torch.zeros(1, out_dim))

    def current_teacher_temp(self) -> float:
        s, w = int(self.step), self.teacher_temp_warmup_steps
        if w <= 0 or s >= w:
            return self.teacher_temp
        return self.warmup_teacher_temp + (self.teacher_temp - self.warmup_teacher_temp) * s / w

    def _student(self, views: Sequence[Tensor]) -> tuple[list[Tensor], Tensor]:
        x = torch.cat(list(views), dim=0)
        feats = self.encoder(x)
        return list(self.head(feats).chunk(len(views))), feats

    @torch.no_grad()
    def _teacher(self, views: Sequence[Tensor]) -> list[Tensor]:
        x = torch.cat(list(views), dim=0)
        return list(self.teacher_head(self.teacher_encoder(x)).chunk(len(views)))

    @torch.no_grad()
    def update_center(self, teacher_out: Sequence[Tensor]) -> None:
        batch_center = _dist.all_reduce_mean(
            torch.cat(list(teacher_out)).float().mean(0, keepdim=True))
        self.center.mul_(self.center_momentum).add_(batch_center * (1 - self.center_momentum))

    def _ibot_student(self, views: Sequence[Tensor], mask: Tensor) -> tuple[list[Tensor], Tensor,
                                                                              Tensor]:
        """Masked global views -> per-view CLS head outputs, pooled features, patch outputs."""
        tokens = masked_vit_tokens(self.encoder, torch.cat(list(views)), mask, self.mask_token)
        feats = self.encoder.pool_tokens(tokens)
        patches = tokens[:, self.encoder.num_prefix_tokens:]
        p_out = self.head(patches.flatten(0, 1)).view(*patches.shape[:2], -1)
        return list(self.head(feats).chunk(len(views))), feats, p_out

    @torch.no_grad()
    def _ibot_teacher(self, views: Sequence[Tensor]) -> tuple[list[Tensor], Tensor]:
        tokens = self.teacher_encoder.forward_tokens(torch.cat(list(views)))
        patches = tokens[:, self.teacher_encoder.num_prefix_tokens:]
        p_out = self.teacher_head(patches.flatten(0, 1)).view(*patches.shape[:2], -1)
        cls_out = self.teacher_head(self.teacher_encoder.pool_tokens(tokens))
        return list(cls_out.chunk(len(views))), p_out

    def _ibot_terms(self, globals_: list[Tensor], tt: float
                    ) -> tuple[list[Tensor], Tensor, list[Tensor], Tensor, dict[str, Any]]:
        n_all = sum(v.shape[0] for v in globals_)
        length = self.encoder.num_patches
        mask = ibot_masks(n_all, length, self.ibot_mask_prob, self.ibot_mask_ratio,
                          globals_[0].device)
        s_global, g_feats, s_patch = self._ibot_student(globals_, mask)
        t_out, t_patch = self._ibot_teacher(globals_)
        mim = ibot_loss(s_patch, t_patch, mask, self.center_patch, self.student_temp, tt)
        if self.training:
            batch_center = _dist.all_reduce_mean(t_patch.float().mean((0, 1)).unsqueeze(0))
            self.center_patch.mul_(self.center_momentum).add_(
                batch_center * (1 - self.center_momentum))
        logs = {"ibot": mim.detach(), "ibot_mask_ratio": mask.float().mean()}
        return s_global, g_feats, t_out, self.ibot_weight * mim, logs

    def forward(self, batch: Mapping[str, Any]) -> tuple[Tensor, dict[str, Any]]:
        globals_ = list(require(batch, "global_views", type(self).__name__))
        locals_ = list(batch.get("local_views", []) or [])
        if len(globals_) < 1 or len(globals_) + len(locals_) < 2:
            raise DataError(f"DINO needs >= 1 global view and >= 2 views in all, got "
                            f"{len(globals_)} global and {len(locals_)} local")
        tt = self.current_teacher_temp()
        extra, logs = None, {}
        if self.ibot_weight > 0:
            s_global, g_feats, t_out, extra, logs = self._ibot_terms(globals_, tt)
        else:
            s_global, g_feats = self._student(globals_)
            t_out = self._teacher(globals_)
        s_local = self._student(locals_)[0] if locals_ else []
        loss = dino_loss(s_global + s_local, t_out, self.center, self.student_temp, tt)
        logs.update(dino=loss.detach(), teacher_temp=tt)
        if extra is not None:
            loss = loss + extra
        if self.koleo_weight > 0:
            kl = torch.stack([koleo_loss(f) for f in g_feats.chunk(len(globals_))]).mean()
            loss = loss + self.koleo_weight * kl
            logs["koleo"] = kl.detach()
        if self.training:
            self.update_center(t_out)
        logs["loss"] = loss.detach()
        return loss, logs

    def on_before_optimizer_step(self, step: int, max_steps: int) -> None:
        """DINO keeps the last layer fixed for its first steps (1 epoch in the paper)."""
        if step < self.freeze_last_layer_steps:
            for p in self.head.last_layer.parameters():
                p.grad = None

    def on_after_optimizer_step(self, step: int, max_steps: int) -> None:
        self.teacher_momentum = cosine_momentum(step, max_steps, self.base_teacher_momentum)
        momentum_update_(self.teacher_encoder, self.encoder, self.teacher_momentum)
        momentum_update_(self.teacher_head, self.head, self.teacher_momentum)
        self.step.fill_(step + 1)

    @classmethod
    def default_transform(cls, image_size: int = 32, local_size: int | None = None,
                          n_local: int = 6, global_scale: tuple[float, float] = (0.4, 1.0),
                          local_scale: tuple[float, float] = (0.05, 0.4),
                          blur: bool | None = None, mean: Sequence[float] | None = None,
                          std: Sequence[float] | None = None, channels: int | None = None):
        """Multi-crop: 2 global views at ``image_size`` and ``n_local`` at ``local_size``
        (default image_size/2, DINO's 96/224 rounded to the ViT patch grid). Blur defaults to off
        below 64 px, as SimCLR does for CIFAR."""
        from fmlab.data import augment as A

        local_size = local_size or max(8, image_size // 2)
        views = A.dino_views(image_size, local_size, n_local, global_scale, local_scale,
                             blur=image_size >= 64 if blur is None else blur,
                             mean=mean or A.IMAGENET_MEAN, std=std or A.IMAGENET_STD)
        if n_local == 0:
            views.pop("local_views")
        return A.BatchTransform(views, channels=channels)
