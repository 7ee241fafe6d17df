"""``fmlab adapt --base-to-new`` and ``--transfer-to SOURCE``: the few-shot sweep's fitted
methods scored on classes they were not fitted on (:mod:`fmlab.adapt.transfer`)."""

from __future__ import annotations

import dataclasses
from typing import Any


def run_transfer(cfg: Any, bb: Any, clip: Any, ftrain: Any, ftest: Any,
                 sweep: dict[str, Any]) -> tuple[list[dict], tuple[str, ...]]:
    """Run the base-to-new or cross-dataset sweep of ``cfg`` (an ``AdaptConfig``).

    Args:
        cfg: the adapt config (``base_to_new`` or ``transfer_to`` set).
        bb, clip: the feature backbone and the image-text model (or None).
        ftrain, ftest: the source's cached train and test features.
        sweep: :func:`~fmlab.adapt.protocol.run_sweep` keywords (shots, seeds, inputs, split_dir).

    Returns:
        (records, the extra metric keys the results store records).
    """
    from fmlab.adapt.transfer import run_base_to_new, run_cross_dataset

    if cfg.base_to_new:
        records = run_base_to_new(ftrain.features, ftrain.labels, ftest.features, ftest.labels,
                                  cfg.methods, **sweep)
        return records, ("new_accuracy", "harmonic_mean")
    from fmlab.data.labelled import open_labelled
    from fmlab.experiments.adapt import _meta, _needs, zeroshot_weights
    from fmlab.features import cached_features

    target, _, ttest, tname = open_labelled(cfg.transfer_to, cfg.data_root, None,
                                            command="fmlab adapt --transfer-to")
    _meta(dataclasses.replace(cfg, data=cfg.transfer_to), ttest, tname)  # leak check on the target
    ft = cached_features(bb, ttest, progress=cfg.progress)
    tzs = None
    if _needs(cfg.methods, "zeroshot_weights"):
        tzs = zeroshot_weights(clip if clip is not None else cfg.text_encoder,
                               list(target.class_names), cfg.templates)
    records = run_cross_dataset(ftrain.features, ftrain.labels, ftest.features, ftest.labels,
                                ft.features, ft.labels, cfg.methods,
                                target_class_names=list(target.class_names),
                                target_zeroshot_weights=tzs, **sweep)
    for r in records:
        r["target"] = {"source": cfg.transfer_to, "test_split": tname,
                       "test_content_hash": ttest.content_hash}
    return records, ("target_accuracy",)
