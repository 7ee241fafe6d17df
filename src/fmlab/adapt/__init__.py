"""Frozen-feature estimators and the leak-free few-shot protocol.

Estimators (scikit-learn style, torch on CPU): :class:`NCM`, :class:`KNN`, :class:`LinearProbe`,
:class:`GDA`, :class:`TipAdapter`, :class:`TipAdapterF`, :class:`ZeroShot` and
:class:`ZeroShotEnsemble`. Protocol: :func:`make_split` / :func:`load_split` for split files,
:func:`run_sweep` for methods × shots × seeds, :func:`summarize` and
:func:`plot_accuracy_vs_shots` for reporting. Importing this package costs torch and numpy only
(matplotlib loads inside the plot function).
"""

from fmlab.adapt.base import Estimator
from fmlab.adapt.coop import CoOp, PromptLearner
from fmlab.adapt.ensemble import ZeroShotEnsemble
from fmlab.adapt.gda import GDA, ledoit_wolf_shrinkage, oas_shrinkage
from fmlab.adapt.knn import KNN
from fmlab.adapt.linear import LinearProbe, fit_logistic
from fmlab.adapt.ncm import NCM
from fmlab.adapt.protocol import (
    METHODS,
    create_method,
    mean_per_class_recall,
    plot_accuracy_vs_shots,
    run_sweep,
    summarize,
)
from fmlab.adapt.splits import FewShotSplit, load_split, make_split
from fmlab.adapt.tip import TipAdapter, TipAdapterF
from fmlab.adapt.zeroshot import ZeroShot, build_zeroshot_weights, load_templates

__all__ = [
    "CoOp",
    "PromptLearner",
    "GDA",
    "KNN",
    "METHODS",
    "NCM",
    "Estimator",
    "FewShotSplit",
    "LinearProbe",
    "TipAdapter",
    "TipAdapterF",
    "ZeroShot",
    "ZeroShotEnsemble",
    "build_zeroshot_weights",
    "create_method",
    "fit_logistic",
    "ledoit_wolf_shrinkage",
    "load_split",
    "load_templates",
    "make_split",
    "mean_per_class_recall",
    "oas_shrinkage",
    "plot_accuracy_vs_shots",
    "run_sweep",
    "summarize",
]
