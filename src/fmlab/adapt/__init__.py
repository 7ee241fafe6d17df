"""Frozen-feature estimators and the leak-free few-shot protocol.

Estimators (scikit-learn estimators computing in torch on CPU): :class:`NCM`, :class:`KNN`,
:class:`LinearProbe`, :class:`GDA`, :class:`TipAdapter`, :class:`TipAdapterF`, :class:`ZeroShot`,
:class:`CoOp`, :class:`ZeroShotEnsemble` and :class:`NMTune`. Each registers itself where it is defined
(:func:`register_estimator`); :data:`METHODS` is the registry the workflows read. Protocol:
:func:`make_split` / :func:`load_split` for split files, :func:`run_sweep` for methods × shots ×
seeds, :func:`summarize` and :func:`plot_accuracy_vs_shots` for reporting. Importing this package
costs torch, numpy and scikit-learn only (matplotlib loads inside the plot function).
"""

# The estimator modules are imported in this order on purpose: registration order is the order
# of the default sweep (ncm, knn, linear, gda, tip, tipf) and of the method listings.
from fmlab.adapt.base import Estimator
from fmlab.adapt.ncm import NCM
from fmlab.adapt.knn import KNN
from fmlab.adapt.linear import LinearProbe, fit_logistic
from fmlab.adapt.gda import GDA, ledoit_wolf_shrinkage, oas_shrinkage
from fmlab.adapt.tip import TipAdapter, TipAdapterF
from fmlab.adapt.zeroshot import ZeroShot, build_zeroshot_weights, load_templates
from fmlab.adapt.coop import CoOp, CoOpPhoto, PromptLearner
from fmlab.adapt.cones import ConES, ConESRandom
from fmlab.adapt.gram import GRAM, GRAMPhi
from fmlab.adapt.ensemble import ZeroShotEnsemble
from fmlab.adapt.nmtune import NMTune
from fmlab.adapt.registry import METHODS, MethodSpec, default_methods, register_estimator
from fmlab.adapt.protocol import (
    create_method,
    mean_per_class_recall,
    plot_accuracy_vs_shots,
    run_sweep,
    summarize,
)
from fmlab.adapt.splits import FewShotSplit, load_split, make_split

__all__ = [
    "CoOp",
    "CoOpPhoto",
    "ConES",
    "GRAM",
    "GRAMPhi",
    "ConESRandom",
    "PromptLearner",
    "GDA",
    "KNN",
    "METHODS",
    "NCM",
    "NMTune",
    "Estimator",
    "FewShotSplit",
    "LinearProbe",
    "MethodSpec",
    "TipAdapter",
    "TipAdapterF",
    "ZeroShot",
    "ZeroShotEnsemble",
    "build_zeroshot_weights",
    "create_method",
    "default_methods",
    "fit_logistic",
    "ledoit_wolf_shrinkage",
    "load_split",
    "load_templates",
    "make_split",
    "mean_per_class_recall",
    "oas_shrinkage",
    "plot_accuracy_vs_shots",
    "register_estimator",
    "run_sweep",
    "summarize",
]
