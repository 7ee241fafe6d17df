"""Self-critical sequence training (Rennie et al. 2017), the policy gradient CgT-GAN uses.

A sampled caption ŷ ~ p_θ(·|x) gets reward r(ŷ); the greedy caption ŷ_g of the same image is the
baseline b = r(ŷ_g). REINFORCE with that baseline minimises

    L = −(r(ŷ) − b) · Σ_t log p_θ(ŷ_t | ŷ_<t, x)

so a sample better than greedy decoding is made more likely and a worse one less likely; the
baseline needs no learned critic and makes the estimate's variance small where greedy is good.
"""

from __future__ import annotations

from torch import Tensor

from fmlab.errors import DataError

__all__ = ["self_critical_loss"]


def self_critical_loss(token_logp: Tensor, mask: Tensor, reward: Tensor, baseline: Tensor,
                       normalise_length: bool = False) -> Tensor:
    """The self-critical REINFORCE loss of a batch of sampled captions.

    Args:
        token_logp: (B, T) log-probabilities of the sampled tokens (with gradient).
        mask: (B, T) 1 for real tokens (up to and including the end token), 0 for padding.
        reward: (B,) reward of each sampled caption (no gradient is taken through it).
        baseline: (B,) reward of the greedy caption of the same image.
        normalise_length: divide each caption's log-probability by its length.

    Returns:
        The scalar loss, mean over the batch.

    Examples:
        >>> import torch
        >>> lp = torch.log(torch.tensor([[0.5, 0.5]])).requires_grad_()
        >>> loss = self_critical_loss(lp, torch.ones(1, 2), torch.tensor([1.0]), torch.tensor([0.0]))
        >>> round(loss.item(), 4)   # −(1 − 0) · 2 log 0.5
        1.3863
    """
    if token_logp.shape != mask.shape or token_logp.dim() != 2:
        raise DataError(f"self-critical loss: token_logp {tuple(token_logp.shape)} and mask "
                        f"{tuple(mask.shape)} must be the same (B, T)")
    b = token_logp.shape[0]
    if reward.shape != (b,) or baseline.shape != (b,):
        raise DataError(f"self-critical loss: reward {tuple(reward.shape)} and baseline "
                        f"{tuple(baseline.shape)} must be ({b},)")
    m = mask.to(token_logp.dtype)
    seq_logp = (token_logp * m).sum(dim=1)
    if normalise_length:
        seq_logp = seq_logp / m.sum(dim=1).clamp_min(1.0)
    advantage = (reward - baseline).detach().to(token_logp.dtype)
    return -(advantage * seq_logp).mean()
