"""Adapt-then-Unlearn (Tiwary et al.): remove a feature from a pre-trained GAN in parameter space.

Stage 0 :func:`split_by_class` sorts G's samples into negatives/positives; stage 1 adapts a copy
of G to the negatives with :func:`ewc_penalty` (Fisher from :func:`fisher_diagonal`) giving θ_N;
stage 2 trains the original G on the positives with a :class:`Repulsion` away from θ_N
(NL2/EL2/IL2). :func:`extrapolate` is the parameter-space baseline θ_N + γ(θ_G − θ_N).
Both stages are a :class:`StageObjective` trained by the engine (:func:`train_stage`).

The default stage 2 is *guided* (:mod:`.guided`): a guide CNN trained on labelled training
images (:mod:`.guide`) labels fresh latents for an anchor on the positives and a margin push out
of the target (:mod:`.latents`), and picks the stopping step on validation latents
(:mod:`.stopping`); the evaluation's classifier is never used for a training choice.
"""

from fmlab.gan.unlearn.ewc import ewc_penalty, fisher_diagonal
from fmlab.gan.unlearn.params import check_same_names, extrapolate, param_snapshot
from fmlab.gan.unlearn.repulsion import REPULSIONS, Repulsion, param_distance, repulsion
from fmlab.gan.unlearn.split import SampleSplit, predict, split_by_class
from fmlab.gan.unlearn.train import StageConfig, StageObjective, train_stage

__all__ = [
    "REPULSIONS", "Repulsion", "SampleSplit", "StageConfig", "StageObjective", "check_same_names",
    "ewc_penalty",
    "extrapolate", "fisher_diagonal", "param_distance", "param_snapshot", "predict",
    "repulsion", "split_by_class", "train_stage",
]
