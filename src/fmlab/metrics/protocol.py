"""The protocol record that travels with every reported metric number.

An FID is only comparable to another FID with the same extractor and weights, resize rule,
sample counts and reference set (algorithm notes §3.1); so every number fmlab reports carries
this dict, and results tables can refuse to put incomparable numbers side by side.
"""

from __future__ import annotations

from typing import Any


def extractor_protocol(extractor: Any) -> dict:
    """The extractor part: a FeatureExtractor's ``.protocol``, a dict as given, or "none"."""
    if extractor is None:
        return {"extractor": None, "weights_sha256": None, "resize": None, "input_size": None}
    if isinstance(extractor, dict):
        return dict(extractor)
    return dict(extractor.protocol)


def reference_record(reference: Any = None, split: str | None = None,
                     content_hash: str | None = None) -> dict:
    """Where the real samples came from: an fmlab ImageSplit, or a source spec and split."""
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

    ``extractor``: a FeatureExtractor, its protocol dict, or None for features of unknown origin.
    ``reference``: an ImageSplit, or a source spec string with ``split`` and ``content_hash``.
    ``extra``: metric settings (``kid_subsets``, ``prdc_k``, ...), recorded as given.
    """
    return {
        **extractor_protocol(extractor),
        "n_real": int(n_real),
        "n_fake": int(n_fake),
        "reference": reference_record(reference, split, content_hash),
        "seed": seed,
        **extra,
    }
