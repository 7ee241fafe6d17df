"""iBOT's masked-image-modelling term for DINO (as in DINOv2 / RAD-DINO): the pieces DINO uses.

A fraction ``mask_prob`` of the global views get a random patch mask (ratio uniform in
``mask_ratio``); the student sees those views with the masked patch embeddings replaced by a
learnable mask token (before position embeddings are added, as iBOT does), the teacher sees them
whole. On masked positions the student's patch-token distribution matches the teacher's:

    L_MIM = mean_images( sum_l m_l H(P_t(l), P_s(l)) / sum_l m_l ),
    P_t(l) = softmax((g_t(z_t(l)) - c_p) / tau_t),  P_s(l) = softmax(g_s(z_s(l)) / tau_s),

averaged over the images that have at least one masked patch; ``c_p`` is a running centre of the
teacher's patch outputs (its own, like DINO's). The patch head is DINO's head (iBOT's shared
head). Masks are random patches, not iBOT's blockwise masks (an 8 x 8 grid leaves little room
for blocks).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from fmlab.errors import ConfigError, DataError

__all__ = ["ibot_loss", "ibot_masks", "masked_vit_tokens"]


def ibot_loss(student_patch: Tensor, teacher_patch: Tensor, mask: Tensor, center: Tensor,
              student_temp: float, teacher_temp: float) -> Tensor:
    """Cross-entropy between teacher and student patch distributions on masked patches only.

    Args:
        student_patch: (N, L, K) head outputs of the student's (masked) patch tokens.
        teacher_patch: (N, L, K) head outputs of the teacher's (unmasked) patch tokens.
        mask: (N, L) bool, True where the student's patch was masked.
        center: (1, K) running centre of the teacher's patch outputs.
        student_temp: student temperature.
        teacher_temp: teacher temperature.

    Returns:
        The loss (0 when nothing is masked).

    Examples:
        >>> import torch
        >>> s, t = torch.randn(2, 4, 8), torch.randn(2, 4, 8)
        >>> mask = torch.tensor([[True, False, False, False], [False] * 4])
        >>> t2 = t.clone(); t2[:, 1:] = 0  # unmasked teacher positions do not count
        >>> c = torch.zeros(1, 8)
        >>> bool(ibot_loss(s, t, mask, c, 0.1, 0.04) == ibot_loss(s, t2, mask, c, 0.1, 0.04))
        True
    """
    if student_patch.shape != teacher_patch.shape or mask.shape != student_patch.shape[:2]:
        raise DataError(f"iBOT: student {tuple(student_patch.shape)}, teacher "
                        f"{tuple(teacher_patch.shape)} and mask {tuple(mask.shape)} disagree")
    log_ps = F.log_softmax(student_patch.float() / student_temp, dim=-1)
    pt = F.softmax((teacher_patch.detach().float() - center) / teacher_temp, dim=-1)
    ce = -(pt * log_ps).sum(-1)  # (N, L)
    m = mask.to(ce.dtype)
    count = m.sum(-1)
    has = count > 0
    if not bool(has.any()):
        return ce.sum() * 0.0
    per_image = (ce * m).sum(-1) / count.clamp(min=1.0)
    return per_image[has].mean()


def ibot_masks(n: int, length: int, mask_prob: float, ratio: tuple[float, float],
               device: torch.device | str = "cpu") -> Tensor:
    """(n, L) bool masks from torch's global RNG: each image is masked with probability
    ``mask_prob``, at a ratio uniform in ``ratio``, on random patches (at least one).

    Examples:
        >>> import torch
        >>> _ = torch.manual_seed(0)
        >>> m = ibot_masks(1000, 64, 0.5, (0.1, 0.5))
        >>> 0.4 < float(m.any(1).float().mean()) < 0.6
        True
    """
    lo, hi = ratio
    if not 0.0 <= mask_prob <= 1.0 or not 0.0 <= lo <= hi < 1.0:
        raise ConfigError(f"iBOT masking: mask_prob {mask_prob} must be in [0, 1] and the ratio "
                          f"range {ratio} within [0, 1)")
    chosen = torch.rand(n, device=device) < mask_prob
    r = lo + (hi - lo) * torch.rand(n, device=device)
    k = torch.clamp((r * length).round().long(), min=1)
    ranks = torch.rand(n, length, device=device).argsort(dim=1).argsort(dim=1)
    return (ranks < k[:, None]) & chosen[:, None]


def masked_vit_tokens(vit: torch.nn.Module, x: Tensor, mask: Tensor | None,
                      mask_token: Tensor | None) -> Tensor:
    """A ``VisionTransformer``'s output tokens with masked patch embeddings replaced.

    Args:
        vit: a :class:`fmlab.models.vit.VisionTransformer`.
        x: (N, C, H, W) images.
        mask: (N, L) bool or None (no masking: the ViT's own ``forward_tokens``).
        mask_token: (1, 1, D) learnable embedding put where ``mask`` is True.

    Returns:
        (N, prefix + L, D) normalised tokens.
    """
    if mask is None or mask_token is None:
        return vit.forward_tokens(x)
    t = vit.patch_embed(x)
    gh, gw = t.shape[-2:]
    t = t.flatten(2).transpose(1, 2)
    if mask.shape != t.shape[:2]:
        raise DataError(f"iBOT mask {tuple(mask.shape)} does not fit {tuple(t.shape[:2])} tokens")
    t = torch.where(mask.unsqueeze(-1), mask_token.to(t.dtype), t)
    pos = vit._pos_for(gh, gw)
    t = vit._prefix(t if pos is None else t + pos)
    for blk in vit.blocks:
        t = blk(t)
    return vit.norm(t)
