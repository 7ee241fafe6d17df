"""The protocol record that travels with every reported metric number.

An FID is only comparable to another FID with the same extractor and weights, resize rule,
sample counts and reference set (algorithm notes §3.1); so every number fmlab reports carries
this dict, and results tables can refuse to put incomparable numbers side by side.
"""

from __future__ import annotations

from typing import Any


def extractor_protocol(extractor: Any) -> dict:
    """The extractor part of a protocol.

    Args:
        extractor: a FeatureExtractor, a protocol dict (copied as given), or None.

    Returns:
        The extractor's ``.protocol``; for None, the four keys set to None.

    Examples:
        >>> extractor_protocol(None)
        {'extractor': None, 'weights_sha256': None, 'resize': None, 'input_size': None}
    """
    if extractor is None:
        return {"extractor": None, "weights_sha256": None, "resize": None, "input_size": None}
    if isinstance(extractor, dict):
        return dict(extractor)
    return dict(extractor.protocol)


def reference_record(reference: Any = None, split: str | None = None,
                     content_hash: str | None = None) -> dict:
    """Where the real samples came from: an fmlab ImageSplit, or a source spec and split.

    Args:
        reference: an ImageSplit (its origin, name and content hash are used) or a source spec.
        split: the split name when ``reference`` is a spec.
        content_hash: the content hash when ``reference`` is a spec.

    Returns:
        ``{"source", "split", "content_hash"}``.

    Examples:
        >>> reference_record("mnist", "test")
        {'source': 'mnist', 'split': 'test', 'content_hash': None}
    """
    if reference is not None and hasattr(reference, "content_hash"):
        return {"source": getattr(reference, "origin", None),
                "split": getattr(reference, "name", split),
                "content_hash": reference.content_hash}
    return {"source": reference, "split": split, "content_hash": content_hash}


def metric_protocol(
    extractor: Any = None,
    *,
    n_real: int,
    n_fake: int,
    reference: Any = None,
    split: str | None = None,
    content_hash: str | None = None,
    seed: int | None = None,
    **extra: Any,
) -> dict:
    """Everything needed to reproduce (and compare) a metric value.

    Args:
        extractor: a FeatureExtractor, its protocol dict, or None for features of unknown
            origin.
        n_real: number of reference samples.
        n_fake: number of generated samples.
        reference: an ImageSplit, or a source spec string with ``split`` and ``content_hash``.
        split: split name of a spec reference.
        content_hash: content hash of a spec reference.
        seed: seed of the metric's own randomness (KID subsets, IS splits).
        **extra: metric settings (``kid_subsets``, ``prdc_k``, ...), recorded as given.

    Returns:
        A flat, JSON-ready dict.

    Examples:
        >>> p = metric_protocol(None, n_real=10, n_fake=5, reference="mnist", split="test",
        ...                     seed=0, kid_subsets=3)
        >>> p["reference"], p["n_fake"], p["kid_subsets"]
        ({'source': 'mnist', 'split': 'test', 'content_hash': None}, 5, 3)
    """
    return {
        **extractor_protocol(extractor),
        "n_real": int(n_real),
        "n_fake": int(n_fake),
        "reference": reference_record(reference, split, content_hash),
        "seed": seed,
        **extra,
    }
