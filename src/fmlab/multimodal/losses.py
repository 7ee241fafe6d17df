"""Image-text contrastive losses: CLIP (symmetric InfoNCE), SigLIP (pairwise sigmoid) and a
multi-positive InfoNCE whose targets mark every pair sharing an identity/class (PLIP).

All three take *unnormalised* embeddings and the logit scale as the multiplier ``s`` (not its
log), and gather embeddings across DDP ranks with :func:`fmlab.engine.distributed.gather_with_grad`:
each rank scores its own rows against every rank's columns, and because that gather sums the
gradient back to each row's owner, DDP's mean over ranks gives exactly the gradient of the
global-batch loss (open_clip's default local-shard gather drops the key-side terms).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fmlab.engine.distributed import all_gather_nograd, gather_with_grad, get_rank, get_world_size


def _normalise_pair(image_emb: torch.Tensor, text_emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if image_emb.ndim != 2 or text_emb.ndim != 2 or image_emb.shape != text_emb.shape:
        raise ValueError(f"image and text embeddings must both be (N, D) with the same shape, "
                         f"got {tuple(image_emb.shape)} and {tuple(text_emb.shape)}")
    return F.normalize(image_emb.float(), dim=-1), F.normalize(text_emb.float(), dim=-1)



def clip_loss(image_emb: torch.Tensor, text_emb: torch.Tensor,
              logit_scale: torch.Tensor | float) -> torch.Tensor:
    """½ [CE(s·I·Tᵀ, diag) + CE(s·T·Iᵀ, diag)] over the global batch (rows: this rank's pairs)."""
    img, txt = _normalise_pair(image_emb, text_emb)
    n = img.shape[0]
    all_img, all_txt = gather_with_grad(img), gather_with_grad(txt)
    target = torch.arange(n, device=img.device) + get_rank() * n
    logits_i = logit_scale * img @ all_txt.T
    logits_t = logit_scale * txt @ all_img.T
    return 0.5 * (F.cross_entropy(logits_i, target) + F.cross_entropy(logits_t, target))


def siglip_loss(image_emb: torch.Tensor, text_emb: torch.Tensor,
                logit_scale: torch.Tensor | float,
                logit_bias: torch.Tensor | float) -> torch.Tensor:
    """−Σ_ij log σ(z_ij (s·⟨i, t_j⟩ + b)) / N with z = +1 on matching pairs, −1 elsewhere.

    Sums over this rank's images against every rank's texts, divided by the local batch size, so
    the mean over ranks equals the single-process loss on the global batch.
    """
    img, txt = _normalise_pair(image_emb, text_emb)
    n = img.shape[0]
    all_txt = gather_with_grad(txt)
    logits = logit_scale * img @ all_txt.T + logit_bias
    z = -torch.ones_like(logits)
    idx = torch.arange(n, device=img.device)
    z[idx, idx + get_rank() * n] = 1.0
    return -F.logsigmoid(z * logits).sum() / n


def multi_positive_targets(row_ids: torch.Tensor, col_ids: torch.Tensor) -> torch.Tensor:
    """Row-normalised targets: every column with the row's identity/class shares the mass."""
    same = (row_ids.reshape(-1, 1) == col_ids.reshape(1, -1)).float()
    return same / same.sum(1, keepdim=True).clamp_min(1.0)


def multi_positive_loss(image_emb: torch.Tensor, text_emb: torch.Tensor,
                        logit_scale: torch.Tensor | float, ids: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE with soft targets: pairs with equal ``ids`` (identity or class) are all
    positives (PLIP's identity-level contrast); reduces to :func:`clip_loss` for distinct ids."""
    img, txt = _normalise_pair(image_emb, text_emb)
    if ids.shape != (img.shape[0],):
        raise ValueError(f"ids must have shape ({img.shape[0]},), got {tuple(ids.shape)}")
    all_img, all_txt = gather_with_grad(img), gather_with_grad(txt)
    all_ids = all_gather_nograd(ids) if get_world_size() > 1 else ids
    target = multi_positive_targets(ids, all_ids)
    logits_i = logit_scale * img @ all_txt.T
    logits_t = logit_scale * txt @ all_img.T
    ce_i = -(target * F.log_softmax(logits_i, dim=1)).sum(1).mean()
    ce_t = -(target * F.log_softmax(logits_t, dim=1)).sum(1).mean()
    return 0.5 * (ce_i + ce_t)


LOSSES = ("clip", "siglip", "multipos")
