"""Offline generative metrics: pure functions of features, streaming wrappers, extractors.

- functions of features: :func:`fid` / :func:`frechet_distance` / :func:`feature_statistics`,
  :func:`intra_fid`, :func:`kid`, :func:`inception_score`, :func:`prdc`, :func:`intra_prdc`;
- streaming ``update/compute`` classes in :mod:`fmlab.metrics.streaming`;
- extractors: :func:`create_extractor` (registry ``EXTRACTORS``), :func:`to_uint8`;
- :func:`reference_statistics` (cached), :func:`metric_protocol`, and :func:`evaluate`, which
  ties them together.
"""

from fmlab.metrics._types import MeanStd
from fmlab.metrics.captioning import bleu4, caption_scores, cider_d
from fmlab.metrics.classifier_score import inception_score
from fmlab.metrics.detection import box_retrieval_ap, mean_box_retrieval_ap
from fmlab.metrics.evaluate import METRICS, evaluate
from fmlab.metrics.extractors import EXTRACTORS, FeatureExtractor, create_extractor, to_uint8
from fmlab.metrics.frechet import feature_statistics, fid, frechet_distance, intra_fid
from fmlab.metrics.kernel_distance import kid
from fmlab.metrics.neighbours import intra_prdc, prdc
from fmlab.metrics.protocol import metric_protocol
from fmlab.metrics.reference import ReferenceStats, reference_statistics
from fmlab.metrics.retrieval import class_retrieval_map, mean_average_precision
from fmlab.metrics.segmentation import confusion_matrix, iou_per_class, mean_iou
from fmlab.metrics.streaming import (
    FeatureStats,
    StreamingFID,
    StreamingIntraFID,
    StreamingIS,
    StreamingKID,
    StreamingPRDC,
)
from fmlab.metrics.text_image import attribute_agreement, clip_score, frame_jitter, r_precision
from fmlab.metrics.text_recognition import character_accuracy, edit_distance, sequence_accuracy

__all__ = [
    "EXTRACTORS",
    "attribute_agreement",
    "clip_score",
    "frame_jitter",
    "r_precision",
    "bleu4",
    "caption_scores",
    "cider_d",
    "box_retrieval_ap",
    "class_retrieval_map",
    "mean_average_precision",
    "mean_box_retrieval_ap",
    "character_accuracy",
    "confusion_matrix",
    "edit_distance",
    "iou_per_class",
    "mean_iou",
    "sequence_accuracy",
    "METRICS",
    "FeatureExtractor",
    "FeatureStats",
    "MeanStd",
    "ReferenceStats",
    "StreamingFID",
    "StreamingIS",
    "StreamingIntraFID",
    "StreamingKID",
    "StreamingPRDC",
    "create_extractor",
    "evaluate",
    "feature_statistics",
    "fid",
    "frechet_distance",
    "inception_score",
    "intra_fid",
    "intra_prdc",
    "kid",
    "metric_protocol",
    "prdc",
    "reference_statistics",
    "to_uint8",
]
