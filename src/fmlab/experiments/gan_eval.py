"""Generative metrics of a set of fake images against a reference split (``fmlab gan eval``).

The maths is :func:`fmlab.metrics.evaluate`; this module adds what a GAN run needs around it:
the reference given as ``SOURCE:SPLIT``, the known weights of the metric extractors found under
the data root (FID-LeNet needs the shipped LeNet-5), the per-class recall of a conditional
generator under the extractor's own classifier, and results-store rows.

Two per-class "recalls" answer different questions about a conditional generator:

- ``class_recall`` (does it follow its labels?): for each class y, the fraction of the samples
  generated with label y that the extractor's classifier (LeNet-5 for MNIST) assigns to y —
  the classifier's recall on class y; reported as the mean over classes and per class. It is
  computed from the same forward pass as the features.
- ``iprdc`` (is each class diverse?): PRDC between the real images of class y and the fakes made
  for y (:func:`fmlab.metrics.intra_prdc`); its recall is the intra-class diversity that ADC-GAN
  claims AC-GAN loses. Logged as ``intra_precision`` / ``intra_recall`` / ``intra_density`` /
  ``intra_coverage`` (means over classes).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from fmlab.errors import ConfigError, DataError, ModelError
from fmlab.experiments.gan_config import EVAL_METRICS

# Extractor weights shipped in the data root (README of /work/shared/data), found by name.
KNOWN_EXTRACTOR_WEIGHTS = {
    "lenet5_mnist": "weights/mnist_small/lenet_epoch=12_test_acc=0.991.pth",
    "resnet56_cifar": "weights/resnet_cifar10/resnet56-4bfd9763.th",
}


def parse_metrics(text: str | list[str]) -> list[str]:
    items = text.split(",") if isinstance(text, str) else list(text)
    wanted = [m.strip().lower() for m in items if m.strip()]
    bad = [m for m in wanted if m not in EVAL_METRICS]
    if bad or not wanted:
        raise ConfigError(f"--metrics: unknown metric(s) {bad or '[]'}; choose from "
                          f"{', '.join(EVAL_METRICS)}")
    return list(dict.fromkeys(wanted))


def resolve_extractor_weights(name: str, weights: str | os.PathLike | None,
                              data_root: str | os.PathLike | None = None) -> Path | None:
    """The weights file for extractor ``name``: ``weights`` as given (a path relative to the
    data root works too), else the known file under the data root, else None (random init)."""
    from fmlab.data import data_root as root_of

    root = root_of(data_root)
    if weights is not None:
        p = Path(weights).expanduser()
        if p.is_file():
            return p
        if not p.is_absolute() and (root / p).is_file():
            return root / p
        raise ModelError(f"extractor weights file not found: {p} (also looked under {root})")
    rel = KNOWN_EXTRACTOR_WEIGHTS.get(name)
    if rel is not None and (root / rel).is_file():
        return root / rel
    return None


def open_reference(spec: str, data_root: str | os.PathLike | None = None):
    """``SOURCE:SPLIT`` (``mnist:test``, ``npz:PATH:test``) → an fmlab ImageSplit."""
    from fmlab.data import open_source, parse_split_spec

    source, split = parse_split_spec(spec)
    if split is None:
        raise ConfigError(f"--ref {spec!r}: name the split, e.g. mnist:test or npz:FILE:test")
    return open_source(source, data_root).split(split)


def make_extractor(name: str, weights: str | os.PathLike | None = None,
                   data_root: str | os.PathLike | None = None, batch_size: int = 500):
    from fmlab.metrics import create_extractor

    # without weights the extractor warns that its values are only good for tests, and the
    # protocol records weights_sha256: null
    path = resolve_extractor_weights(name, weights, data_root)
    return create_extractor(name, weights=path, batch_size=batch_size)


def class_recall(probs: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Per class y: mean 1[argmax p(x) = y] over samples made with label y; and their mean."""
    pred = np.asarray(probs).argmax(1)
    labels = np.asarray(labels)
    per_class = {int(c): float(np.mean(pred[labels == c] == c)) for c in np.unique(labels)}
    return {"mean": float(np.mean(list(per_class.values()))), "per_class": per_class}


def check_request(images: np.ndarray, labels: np.ndarray | None, metrics: list[str] | str
                  ) -> list[str]:
    """The metric names, after the checks that need no extractor (so they fail first)."""
    wanted = parse_metrics(metrics)
    if len(images) < 2:
        raise DataError(f"need at least 2 fake images, got {len(images)}")
    if labels is None and {"ifid", "iprdc", "class_recall"} & set(wanted):
        which = [m for m in ("ifid", "iprdc", "class_recall") if m in wanted]
        raise ConfigError(f"metric(s) {', '.join(which)} need the class of every fake sample: "
                          "a conditional generator, or 'labels' in the fake-images npz")
    return wanted


def evaluate_fakes(images: np.ndarray, labels: np.ndarray | None, ref: Any, extractor: Any,
                   metrics: list[str], *, num_classes: int | None = None, seed: int = 0,
                   ref_n: int | None = None) -> dict[str, Any]:
    """Every requested metric of uint8 ``images`` against the ImageSplit ``ref``.

    ``class_recall`` is added when the fakes carry labels and the extractor's classifier has
    the generator's ``num_classes`` outputs (or when asked for explicitly).
    """
    from fmlab.metrics import evaluate

    wanted = check_request(images, labels, metrics)
    n_out = extractor.num_classes
    auto_recall = (labels is not None and n_out is not None and num_classes is not None
                   and n_out == num_classes)
    if "class_recall" in wanted:
        if n_out is None:
            raise ModelError(f"class_recall needs an extractor with a classifier; "
                             f"{extractor.name!r} has none")
        if labels is not None and len(labels) and int(labels.max()) >= n_out:
            raise DataError(f"class_recall: label {int(labels.max())} is outside the "
                            f"{n_out} classes of extractor {extractor.name!r}")
    do_recall = "class_recall" in wanted or auto_recall
    need_probs = "is" in wanted or do_recall
    feats, probs = extractor.extract(images, probs=need_probs)
    core = [m for m in wanted if m != "class_recall"]
    out: dict[str, Any] = {}
    if core:
        out = evaluate(feats, ref, extractor, core, fake_labels=labels, fake_probs=probs,
                       seed=seed, ref_n=ref_n or None)
        out["protocol"]["fake_input"] = "images"
    if do_recall:
        assert probs is not None and labels is not None
        out["class_recall"] = class_recall(probs, labels)
    if "protocol" not in out:
        from fmlab.metrics import metric_protocol

        out["protocol"] = metric_protocol(extractor, n_real=0, n_fake=len(images), seed=seed,
                                          reference=ref, metrics=wanted, fake_input="images")
    if do_recall:
        out["protocol"]["class_recall"] = f"argmax of {extractor.name} classifier == label"
    return {**{k: v for k, v in out.items() if k != "protocol"}, "protocol": out["protocol"]}


def result_rows(res: dict[str, Any], *, run_id: str, method: str, seed: int | None,
                source: str, hyperparameters: dict | None = None, extra: dict | None = None
                ) -> list[dict[str, Any]]:
    """Results-store rows (task ``gan``): one per scalar (kid/is means carry their std)."""
    proto = res["protocol"]
    base = {"run_id": run_id, "task": "gan", "source": source,
            "split_hash": proto.get("reference", {}).get("content_hash"),
            "backbone": proto.get("extractor"), "weights_hash": proto.get("weights_sha256"),
            "method": method, "hyperparameters": hyperparameters, "seed": seed}
    rows = []

    def add(metric: str, value: float, more: dict | None = None) -> None:
        rows.append({**base, "metric": metric, "value": float(value),
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
    return rows


def flat_metrics(res: dict[str, Any]) -> dict[str, float]:
    """``{"fid": .., "kid": mean, "precision": .., "ifid": mean, ...}`` for logs and tables.

    Intra-class PRDC (``iprdc``) becomes ``intra_precision``, ``intra_recall``, ... (class means).
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
