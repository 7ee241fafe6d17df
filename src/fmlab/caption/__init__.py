"""Captioning (issue 23): rewards and the self-critical policy-gradient loss of CgT-GAN.

The captioner, its training workflow and ``fmlab caption`` build on these pure pieces.
"""

from fmlab.caption.rewards import clip_agg_target, mixed_reward, semantic_reward
from fmlab.caption.self_critical import self_critical_loss

__all__ = ["clip_agg_target", "mixed_reward", "self_critical_loss", "semantic_reward"]
