"""``evaluate``: every generative metric of a fake set against a reference, with its protocol.

This is the library entry point behind ``fmlab gan eval``: it accepts images (uint8) or
features on either side, runs the extractor where images are given, computes the requested
metrics with the pure functions of this package, and returns them with the protocol record that
makes the numbers comparable (:mod:`fmlab.metrics.protocol`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fmlab.errors import ConfigError, DataError
from fmlab.metrics._checks import as_features, as_labels, foreign_labels_hint, to_numpy
from fmlab.metrics.classifier_score import inception_score
from fmlab.metrics.extractors import FeatureExtractor, create_extractor
from fmlab.metrics.frechet import feature_statistics, fid, frechet_distance, intra_fid
from fmlab.metrics.kernel_distance import kid
from fmlab.metrics.neighbours import intra_prdc, prdc
from fmlab.metrics.protocol import metric_protocol
from fmlab.metrics.reference import reference_statistics, select_indices
from fmlab.metrics.streaming import FeatureStats

METRICS = ("fid", "kid", "is", "prdc", "ifid", "iprdc")


def _is_split(x: Any) -> bool:
    return hasattr(x, "iter_batches") and hasattr(x, "content_hash")


def _is_images(x: Any, name: str) -> bool:
    arr = x if hasattr(x, "dtype") and hasattr(x, "ndim") else to_numpy(x)
    dtype = str(arr.dtype)
    if dtype.endswith("uint8"):
        return True
    if arr.ndim >= 3:
        raise DataError(
            f"{name}: got a {dtype} array of shape {tuple(arr.shape)}; images must be uint8 "
            "(quantise with fmlab.metrics.to_uint8), features 2-D (samples, dim)"
        )
    return False


def _resolve_extractor(extractor: Any) -> FeatureExtractor | None:
    if extractor is None or isinstance(extractor, FeatureExtractor):
        return extractor
    if isinstance(extractor, str):
        return create_extractor(extractor)
    raise ConfigError(f"extractor must be a name or a FeatureExtractor, got {type(extractor)}")


def _need_extractor(ext: FeatureExtractor | None, name: str) -> FeatureExtractor:
    if ext is None:
        raise ConfigError(f"{name} are images: give an extractor (e.g. 'inception_v3')")
    return ext


def evaluate(
    fake: Any,
    ref: Any,
    extractor: Any = None,
    metrics: Sequence[str] = METRICS,
    *,
    fake_labels: Any = None,
    ref_labels: Any = None,
    fake_probs: Any = None,
    seed: int = 0,
    kid_subsets: int = 100,
    kid_subset_size: int | None = None,
    is_splits: int = 10,
    prdc_k: int = 5,
    ref_n: int | None = None,
    ref_seed: int | None = None,
    ref_cache: bool = True,
    reference: str | None = None,
    reference_split: str | None = None,
) -> dict[str, Any]:
    """Compute ``metrics`` of ``fake`` against ``ref``: ``{metric: value, "protocol": {...}}``.

    The library face of ``fmlab gan eval``: images on either side go through the extractor,
    the numbers come from the pure functions of this package, and the protocol record that
    makes them comparable comes with them.

    Args:
        fake: uint8 images (N, H, W[, C]) or float features (N, D).
        ref: the same, or an fmlab ImageSplit (its labels and content hash are used; FID-only
            runs use the cached reference statistics).
        extractor: a name or :class:`~fmlab.metrics.FeatureExtractor`; required when either
            side is images, recorded in the protocol when both are features.
        metrics: any of :data:`METRICS` (``fid kid is prdc ifid iprdc``).
        fake_labels: the class each fake sample was made for (``ifid``, ``iprdc``).
        ref_labels: labels of array references (a split brings its own).
        fake_probs: class probabilities for ``is`` when ``fake`` is features.
        seed: seed of KID subsets and IS splits.
        kid_subsets: KID subsets.
        kid_subset_size: KID subset size; default min(1000, n_real, n_fake).
        is_splits: IS splits.
        prdc_k: PRDC neighbour.
        ref_n: use ``ref_n`` samples of a split reference (the first ones, or random ones
            with ``ref_seed``).
        ref_seed: seed of the random reference selection.
        ref_cache: read/write cached reference statistics.
        reference: name of an array reference, for the protocol.
        reference_split: its split, for the protocol.

    Returns:
        ``{"fid": float, "kid": {"mean", "std"}, "is": {"mean", "std"}, "prdc": {"precision",
        "recall", "density", "coverage"}, "ifid": {"mean", "per_class"}, "iprdc": {four PRDC
        means, "per_class"}, "protocol": {...}}``, with only the metrics asked for.

    Raises:
        ConfigError: an unknown metric, a missing extractor, labels or probabilities.
        DataError: bad images, features or labels.

    Examples:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> real, fake = rng.normal(size=(50, 4)), rng.normal(size=(60, 4))
        >>> out = evaluate(fake, real, metrics=["fid", "kid", "prdc"])
        >>> sorted(out)
        ['fid', 'kid', 'prdc', 'protocol']
        >>> round(out["fid"], 3), out["kid"]["mean"] < 0.05
        (0.212, True)
        >>> out["protocol"]["n_real"], out["protocol"]["n_fake"], out["protocol"]["kid_subset_size"]
        (50, 60, 50)
    """
    wanted = [m.lower() for m in metrics]
    unknown = [m for m in wanted if m not in METRICS]
    if unknown or not wanted:
        raise ConfigError(f"unknown metric(s) {unknown or '[]'}; choose from {', '.join(METRICS)}")
    ext = _resolve_extractor(extractor)
    out: dict[str, Any] = {}

    # Fake side: features (and probabilities for IS).
    probs = None
    if _is_images(fake, "fake"):
        fake_feats, probs = _need_extractor(ext, "fake samples").extract(fake, probs="is" in wanted)
        fake_kind = "images"
    else:
        fake_feats, fake_kind = as_features(fake, "fake features", min_rows=2), "features"
    if fake_probs is not None:
        probs = fake_probs
    if "is" in wanted and probs is None:
        raise ConfigError("metric 'is' needs class probabilities: pass fake images or fake_probs")
    if fake_labels is not None:
        fake_labels = as_labels(fake_labels, fake_feats.shape[0], "fake labels")

    # Reference side.
    ref_feats, ref_stats, ref_info, selection = None, None, {}, None
    if _is_split(ref):
        ref_info = {"reference": ref}
        labels = None if ref.labels is None else np.asarray(ref.labels)
        if set(wanted) <= {"fid", "ifid"}:
            ref_stats = reference_statistics(_need_extractor(ext, "reference samples"), ref, ref_n,
                                             ref_seed, per_class="ifid" in wanted, cache=ref_cache)
            selection, n_real = ref_stats.key["selection"], ref_stats.n
        else:
            idx, selection = select_indices(len(ref), ref_n, ref_seed)
            ref_ext = _need_extractor(ext, "reference samples")
            ref_feats = np.concatenate([f for _, f, _ in ref_ext.iter_split(ref, idx)])
            if labels is not None and ref_labels is None:
                ref_labels = labels[idx]
    elif _is_images(ref, "ref"):
        ref_feats = _need_extractor(ext, "reference samples")(ref)
        ref_info = {"reference": reference, "split": reference_split}
    else:
        ref_feats = as_features(ref, "reference features", min_rows=2)
        ref_info = {"reference": reference, "split": reference_split}
    if ref_feats is not None:
        n_real = ref_feats.shape[0]
        if ref_labels is not None:
            ref_labels = as_labels(ref_labels, n_real, "reference labels")
    n_fake = fake_feats.shape[0]

    if "fid" in wanted:
        if ref_stats is not None:
            out["fid"] = frechet_distance(ref_stats.mu, ref_stats.sigma,
                                          *feature_statistics(fake_feats))
        else:
            out["fid"] = fid(ref_feats, fake_feats)
    if "kid" in wanted:
        size = kid_subset_size or min(1000, n_real, n_fake)
        out["kid"] = kid(ref_feats, fake_feats, kid_subsets, size, seed)._asdict()
        kid_subset_size = size
    if "is" in wanted:
        out["is"] = inception_score(probs, is_splits, seed)._asdict()
    if "prdc" in wanted:
        out["prdc"] = prdc(ref_feats, fake_feats, k=prdc_k)
    if "ifid" in wanted:
        out["ifid"] = _intra(ref_feats, ref_labels, ref_stats, fake_feats, fake_labels)
    if "iprdc" in wanted:
        if fake_labels is None or ref_labels is None:
            raise ConfigError("metric 'iprdc' needs fake_labels (the class each sample was made "
                              "for) and reference labels")
        out["iprdc"] = intra_prdc(ref_feats, ref_labels, fake_feats, fake_labels, k=prdc_k)

    out["protocol"] = metric_protocol(
        ext, n_real=n_real, n_fake=n_fake, seed=seed,
        **({"reference": ref} if _is_split(ref) else
           {"reference": ref_info.get("reference"), "split": ref_info.get("split")}),
        metrics=wanted, fake_input=fake_kind, reference_selection=selection,
        kid_subsets=kid_subsets if "kid" in wanted else None,
        kid_subset_size=kid_subset_size if "kid" in wanted else None,
        is_splits=is_splits if "is" in wanted else None,
        prdc_k=prdc_k if {"prdc", "iprdc"} & set(wanted) else None,
    )
    return out


def _intra(ref_feats, ref_labels, ref_stats, fake_feats, fake_labels) -> dict[str, Any]:
    if fake_labels is None:
        raise ConfigError("metric 'ifid' needs fake_labels (the class each sample was made for)")
    if ref_stats is None:
        if ref_labels is None:
            raise ConfigError("metric 'ifid' needs reference labels (ref_labels)")
        return intra_fid(ref_feats, ref_labels, fake_feats, fake_labels)
    per_class: dict[int, float] = {}
    for c, (mu, sigma) in sorted(ref_stats.per_class.items()):
        f = fake_feats[fake_labels == c]
        if len(f) < 2:
            raise DataError(f"intra-FID: class {c} has {len(f)} fake samples; need at least 2"
                            + foreign_labels_hint(fake_labels, ref_stats.per_class))
        per_class[c] = frechet_distance(mu, sigma, *FeatureStats().update(f).compute())
    if not per_class:
        raise DataError("intra-FID: the reference has no class with 2 or more samples")
    return {"mean": float(np.mean(list(per_class.values()))), "per_class": per_class}
