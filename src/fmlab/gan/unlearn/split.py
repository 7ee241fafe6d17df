"""Stage 0: sample the pre-trained generator and split the samples by a classifier's verdict.

Negatives are the samples the classifier assigns to the target class (the feature to unlearn),
positives all others. Samples travel as uint8 images (what a user would look at, label or save)
and are turned back into [-1, 1] tensors for training with :func:`fmlab.gan.to_gan_input`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from fmlab.errors import ConfigError, DataError
from fmlab.gan.nets.base import Generator

Classifier = Callable[[np.ndarray], np.ndarray]  # uint8 images -> (N, K) logits


@dataclass
class SampleSplit:
    negatives: np.ndarray  # uint8 (N, H, W[, C])
    positives: np.ndarray
    predictions: np.ndarray  # class of every sample drawn (empty when sets were given)


@torch.no_grad()
def predict(classifier: Classifier, images: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """argmax class of uint8 images under ``classifier``, batch by batch."""
    out = [np.asarray(classifier(images[i:i + batch_size])).argmax(1)
           for i in range(0, len(images), batch_size)]
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def split_by_class(G: Generator, classifier: Classifier, target_class: int, n: int = 5000,
                   seed: int = 0, min_count: int = 16) -> SampleSplit:
    """Draw ``n`` samples from G and split them on ``classifier``'s argmax == ``target_class``."""
    from fmlab.gan.io import generate_images

    if n < 2:
        raise ConfigError(f"number of samples to split must be >= 2, got {n}")
    images, _ = generate_images(G, n, seed)
    if target_class < 0:
        raise ConfigError(f"target class must be >= 0, got {target_class}")
    k = np.asarray(classifier(images[:2])).shape[1]
    if target_class >= k:
        raise ConfigError(f"target class {target_class} is outside the classifier's {k} "
                          f"classes (0..{k - 1})")
    pred = predict(classifier, images)
    neg = pred == target_class
    for what, count in (("negatives (target class)", int(neg.sum())),
                        ("positives (other classes)", int((~neg).sum()))):
        if count < min_count:
            raise DataError(f"only {count} of {n} generated samples are {what} for class "
                            f"{target_class}; need at least {min_count} (draw more samples or "
                            "pass the sets yourself)")
    return SampleSplit(images[neg], images[~neg], pred)
