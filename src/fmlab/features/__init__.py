"""Feature extraction and the content-addressed feature cache."""

from fmlab.features.extract import (
    FeatureSet,
    cached_features,
    extract_features,
    feature_key,
    load_features,
    save_features,
)

__all__ = ["FeatureSet", "cached_features", "extract_features", "feature_key", "load_features",
           "save_features"]
