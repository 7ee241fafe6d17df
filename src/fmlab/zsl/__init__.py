"""Zero-shot learning on frozen features: LisGAN, f-CLSWGAN and the ridge projection baseline.

* :mod:`fmlab.zsl.nets` — conditional feature generator G(z, a) and critic D(x, a);
* :mod:`fmlab.zsl.soul` — soul samples (per-class k-means centres) and their regulariser;
* :mod:`fmlab.zsl.objective` — the WGAN-GP step for the engine's manual optimisation;
* :mod:`fmlab.zsl.estimator` — fit / decision_function of the generative methods;
* :mod:`fmlab.zsl.projection` — ridge regression from features to class embeddings;
* :mod:`fmlab.zsl.metrics` — ZSL top-1 and GZSL seen/unseen/harmonic mean (pure functions);
* :mod:`fmlab.zsl.semantics` — MiniLM class vectors from descriptions.

The command is ``fmlab zsl`` (:mod:`fmlab.experiments.zsl`).
"""

from fmlab.zsl.metrics import gzsl_scores, harmonic_mean, per_class_accuracy, zsl_top1
from fmlab.zsl.soul import SoulSampleLoss, nearest_soul_distance, soul_samples

__all__ = ["SoulSampleLoss", "gzsl_scores", "harmonic_mean", "nearest_soul_distance",
           "per_class_accuracy", "soul_samples", "zsl_top1"]
