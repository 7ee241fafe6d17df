"""GAN metric results as results-store records and flat log values.

:func:`evaluate_fakes <fmlab.experiments.gan_eval.evaluate_fakes>` returns nested values
(KID/IS with their std, per-class intra-FID, intra-class PRDC); the store wants one scalar per
row and the logs one float per name. Rows reach the store only through
:meth:`fmlab.results.ResultsStore.record` / :meth:`fmlab.results.Protocol.rows`.
"""

from __future__ import annotations

from typing import Any

from fmlab.results import Protocol


def metric_records(res: dict[str, Any], *, method: str, seed: int | None,
                   hyperparameters: dict | None = None, extra: dict | None = None,
                   seconds: float | None = None) -> list[dict[str, Any]]:
    """Long records (``metric``/``value``) for :meth:`fmlab.results.ResultsStore.record`.

    One record per scalar: kid/is means carry their std, ifid/class_recall their per-class
    values, iprdc becomes ``intra_precision`` ... with the per-class values of each; every
    record's ``extra`` holds ``extra`` and the metric protocol.

    Args:
        res: the result of :func:`evaluate_fakes` (with its ``protocol``).
        method: the method column (the generator's architecture, or ``fake_images``).
        seed: the sampling seed.
        hyperparameters: stored as the hyperparameters column.
        extra: more facts for every row's ``extra``.
        seconds: the run time, for the seconds column.

    Returns:
        The records.
    """
    proto = res["protocol"]
    records: list[dict[str, Any]] = []

    def add(metric: str, value: float, more: dict | None = None) -> None:
        records.append({"metric": metric, "value": float(value), "method": method, "seed": seed,
                        "hyperparameters": hyperparameters, "seconds": seconds,
                        "extra": {**(extra or {}), **(more or {}), "protocol": proto}})

    for name, value in res.items():
        if name == "protocol":
            continue
        if name == "fid":
            add("fid", value)
        elif name in ("kid", "is"):
            add(name, value["mean"], {"std": value["std"]})
        elif name == "prdc":
            for k, v in value.items():
                add(k, v)
        elif name in ("ifid", "class_recall"):
            add(name, value["mean"], {"per_class": value["per_class"]})
        elif name == "iprdc":
            for k, v in value.items():
                if k != "per_class":
                    add(f"intra_{k}", v, {"per_class": {c: d[k] for c, d in
                                                        value["per_class"].items()}})
        elif isinstance(value, (int, float)):  # caption consistency (class_acc, *_agree)
            add(name, value)
    return records


def metric_protocol_of(res: dict[str, Any], source: str) -> Protocol:
    """The results-store protocol of a GAN evaluation: reference, its hash, extractor, weights.

    Args:
        res: the result of :func:`evaluate_fakes`.
        source: the reference as ``SOURCE:SPLIT``.

    Returns:
        The :class:`~fmlab.results.Protocol` (the extractor stands in the backbone column).
    """
    proto = res["protocol"]
    return Protocol(source=source, split_hash=proto.get("reference", {}).get("content_hash"),
                    backbone=proto.get("extractor"), weights_hash=proto.get("weights_sha256"))


def result_rows(res: dict[str, Any], *, run_id: str, method: str, seed: int | None,
                source: str, hyperparameters: dict | None = None, extra: dict | None = None
                ) -> list[dict[str, Any]]:
    """Results-store rows (task ``gan``): one per scalar (kid/is means carry their std).

    Built by :meth:`fmlab.results.Protocol.rows` from :func:`metric_records`, the one record
    path; kept for callers that append rows themselves.

    Args:
        res: the result of :func:`evaluate_fakes`.
        run_id: the run id of the rows.
        method: the method column.
        seed: the sampling seed.
        source: the reference as ``SOURCE:SPLIT``.
        hyperparameters: the hyperparameters column.
        extra: more facts for every row's ``extra``.

    Returns:
        The rows.
    """
    records = metric_records(res, method=method, seed=seed, hyperparameters=hyperparameters,
                             extra=extra)
    return metric_protocol_of(res, source).rows("gan", run_id, records)


def flat_metrics(res: dict[str, Any]) -> dict[str, float]:
    """``{"fid": .., "kid": mean, "precision": .., "ifid": mean, ...}`` for logs and tables.

    Intra-class PRDC (``iprdc``) becomes ``intra_precision``, ``intra_recall``, ... (class means).

    Args:
        res: the result of :func:`evaluate_fakes`.

    Returns:
        Metric name → float.

    Examples:
        >>> flat_metrics({"fid": 3.0, "kid": {"mean": 0.1, "std": 0.01}, "protocol": {}})
        {'fid': 3.0, 'kid': 0.1}
    """
    flat: dict[str, float] = {}
    for name, value in res.items():
        if name == "protocol":
            continue
        if name == "iprdc":
            flat.update({f"intra_{k}": float(v) for k, v in value.items() if k != "per_class"})
            continue
        if isinstance(value, dict) and "mean" in value:
            flat[name] = float(value["mean"])
        elif isinstance(value, dict):
            flat.update({k: float(v) for k, v in value.items()})
        else:
            flat[name] = float(value)
    return flat
