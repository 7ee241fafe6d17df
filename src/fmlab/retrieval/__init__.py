"""Metric learning for image retrieval (Dark Side augmentation, issue 24).

- :mod:`~fmlab.retrieval.gem`: GeM pooling and :class:`RetrievalNet` (trunk → GeM → L2);
- :mod:`~fmlab.retrieval.losses`: contrastive and triplet losses (registry ``LOSSES``);
- :mod:`~fmlab.retrieval.mining`: diverse anchor mining, positives, hard negatives;
- :mod:`~fmlab.retrieval.objective`: :class:`DarkSideObjective` for the engine.

The night degradation and the photometric jitter live in :mod:`fmlab.data.night`; retrieval mAP
in :mod:`fmlab.metrics.retrieval`; the workflow in :mod:`fmlab.experiments.darkside`.
"""

from fmlab.retrieval.gem import GeM, RetrievalNet, gem
from fmlab.retrieval.losses import LOSSES, ContrastiveLoss, TripletLoss
from fmlab.retrieval.mining import diverse_anchors, hard_negatives, pick_positives
from fmlab.retrieval.objective import DarkSideObjective

__all__ = ["LOSSES", "ContrastiveLoss", "DarkSideObjective", "GeM", "RetrievalNet", "TripletLoss",
           "diverse_anchors", "gem", "hard_negatives", "pick_positives"]
