"""Captioning (issue 23): CgT-GAN unpaired captioning and controlled caption attacks.

- :mod:`fmlab.caption.rewards`, :mod:`fmlab.caption.self_critical`: the reward and policy-gradient maths;
- :mod:`fmlab.caption.data`: captioned MNIST cut into disjoint paired / image-only / corpus blocks;
- :mod:`fmlab.caption.models`: mini image-text model, GRU captioner, GRU text discriminator;
- :mod:`fmlab.caption.objectives`: the engine objectives (``SEMANTIC_REWARDS`` registry);
- :mod:`fmlab.caption.attack`: feature-space / output-layer attacks, the attack generator.

The workflow behind ``fmlab caption`` is :mod:`fmlab.experiments.caption` (+ ``caption_attack``).
"""

from fmlab.caption.rewards import clip_agg_target, mixed_reward, semantic_reward
from fmlab.caption.self_critical import self_critical_loss

__all__ = ["clip_agg_target", "mixed_reward", "self_critical_loss", "semantic_reward"]
