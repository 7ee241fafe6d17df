"""Offline generative metrics: pure functions of features, streaming wrappers, extractors."""

from fmlab.metrics._types import MeanStd
from fmlab.metrics.classifier_score import inception_score
from fmlab.metrics.frechet import feature_statistics, fid, frechet_distance, intra_fid
from fmlab.metrics.kernel_distance import kid
from fmlab.metrics.neighbours import prdc

__all__ = [
    "MeanStd",
    "feature_statistics",
    "fid",
    "frechet_distance",
    "inception_score",
    "intra_fid",
    "kid",
    "prdc",
]
