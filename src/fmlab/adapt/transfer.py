"""Generalisation beyond the fitted classes: base-to-new and cross-dataset evaluation.

Prompt learners (CoOp, GRAM) learn a class-agnostic context, so the same fitted estimator can be
asked about classes it never saw. Two protocols of the prompt-learning literature (CoOp/CoCoOp,
GRAM), both wrapping :func:`~fmlab.adapt.protocol.run_sweep` so the split files, seeds and
leak rules are the few-shot sweep's own:

* **base-to-new**: the classes are split in two, base = the first ⌈C/2⌉ (in the source's class
  order), new = the rest. Every method is fitted on few-shot splits of the base classes only;
  its accuracy is measured on the base classes' test images (among the base classes) and, through
  ``for_classes``, on the new classes' test images (among the new classes); their harmonic mean
  H = 2·b·n/(b+n) summarises both.
* **cross-dataset**: fitted on the source's classes, then scored on a target source's test
  images among the target's classes.

Only methods whose class sets ``transfers_to_new_classes`` (zeroshot, coop, coop_photo, gram) take
part (also gram_phi); the others are refused before any work, by name.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fmlab.adapt.base import ArrayLike, to_labels, to_tensor
from fmlab.adapt.protocol import mean_per_class_recall, run_sweep
from fmlab.adapt.registry import get_method
from fmlab.errors import ConfigError, DataError
from fmlab.utils.io import write_json

__all__ = ["base_new_split", "check_transferable", "harmonic_mean", "run_base_to_new", "run_cross_dataset",
           "summarize_transfer"]


def base_new_split(n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(base, new) class ids: the first ⌈C/2⌉ classes and the rest (CoOp's base-to-new rule).

    Examples:
        >>> base_new_split(5)
        (array([0, 1, 2]), array([3, 4]))
    """
    if n_classes < 2:
        raise DataError(f"base-to-new needs at least 2 classes, got {n_classes}")
    b = math.ceil(n_classes / 2)
    return np.arange(b), np.arange(b, n_classes)


def harmonic_mean(a: float, b: float) -> float:
    """2ab/(a+b) (0 when both are 0): the base-to-new summary, low when either side is.

    Examples:
        >>> harmonic_mean(0.8, 0.4)
        0.5333333333333333
    """
    return 0.0 if a + b == 0 else 2 * a * b / (a + b)


def check_transferable(methods: Sequence[str], what: str) -> None:
    """Refuse (by name) the methods that cannot score classes they were not fitted on."""
    bad = [m for m in methods if not get_method(m).cls.transfers_to_new_classes]
    if bad:
        raise ConfigError(f"{what}: method(s) {', '.join(bad)} learn per-class parameters and "
                          "cannot score classes they were not fitted on; use zeroshot, coop, "
                          "coop_photo, gram or gram_phi")


def _scorer(store: dict, names: list[str], zs: Any, X: Any, y: np.ndarray, then: Any = None):
    """An ``on_fit`` hook: score the just-fitted estimator on other classes (after its fit,
    before the sweep predicts its own test data), then call the caller's own hook ``then``."""
    def on_fit(method: str, k: int | str, seed: int, est: Any) -> None:
        pred = est.for_classes(names, zeroshot_weights=zs).predict(X)
        store[(method, str(k), seed)] = (float(np.mean(pred == y)), mean_per_class_recall(y, pred))
        if then is not None:
            then(method, k, seed, est)
    return on_fit


def run_base_to_new(train_features: ArrayLike, train_labels: ArrayLike, test_features: ArrayLike,
                    test_labels: ArrayLike, methods: Sequence[str], shots: Iterable[int | str],
                    seeds: Iterable[int], *, class_names: Sequence[str],
                    zeroshot_weights: ArrayLike | None = None, **sweep: Any) -> list[dict[str, Any]]:
    """Fit on few-shot splits of the base classes; score base and new classes (module doc).

    Args:
        train_features, train_labels, test_features, test_labels: the whole source, as for
            :func:`~fmlab.adapt.protocol.run_sweep` (labels index ``class_names``).
        methods, shots, seeds: the sweep (methods must transfer to new classes).
        class_names: every class's name.
        zeroshot_weights: (C, D) weights of every class, for methods that require them.
        **sweep: further :func:`run_sweep` keywords (``model``, ``meta``, ``split_dir``, ...).

    Returns:
        run_sweep's records of the base classes, each with ``base_accuracy`` (= ``accuracy``),
        ``new_accuracy``, ``new_mean_per_class_recall``, ``harmonic_mean`` and the class lists.
        With ``split_dir``, its split files index the base classes' train images, whose rows in
        the train split ``split_dir/base_to_new_rows.json`` lists.
    """
    check_transferable(methods, "base-to-new")
    sweep = dict(sweep)  # the views are subset below; the caller's dict stays as it was
    names = list(class_names)
    base, new = base_new_split(len(names))
    ytr, yte = to_labels(train_labels, "train_labels"), to_labels(test_labels, "test_labels")
    Xtr, Xte = to_tensor(train_features, "train_features"), to_tensor(test_features, "test_features")
    tr, te_b, te_n = np.isin(ytr, base), np.isin(yte, base), np.isin(yte, new)
    if not te_n.any():
        raise DataError("base-to-new: the test split has no image of the new classes")
    zs = None if zeroshot_weights is None else to_tensor(zeroshot_weights, "zeroshot_weights")
    if sweep.get("train_view_features") is not None:  # augmented views follow their images
        sweep["train_view_features"] = to_tensor(sweep["train_view_features"],
                                                 "train_view_features")[:, torch.from_numpy(tr)]
    split_dir = sweep.get("split_dir")
    if split_dir is not None:  # the split files index the base classes' rows: say which they are
        write_json(Path(split_dir) / "base_to_new_rows.json", {
            "base_classes": [names[c] for c in base], "new_classes": [names[c] for c in new],
            "note": "split_*.json index train_rows: the train split's images of the base classes",
            "train_rows": np.flatnonzero(tr).tolist()})
    scored: dict = {}
    hook = _scorer(scored, [names[c] for c in new], None if zs is None else zs[new],
                   Xte[te_n], yte[te_n] - len(base), sweep.pop("on_fit", None))
    records = run_sweep(Xtr[tr], ytr[tr], Xte[te_b], yte[te_b], methods, shots, seeds,
                        class_names=[names[c] for c in base],
                        zeroshot_weights=None if zs is None else zs[base], on_fit=hook, **sweep)
    for r in records:
        acc, mpcr = scored[(r["method"], str(r["shots"]), r["seed"])]
        r.update(evaluation="base_to_new", base_accuracy=r["accuracy"], new_accuracy=acc,
                 new_mean_per_class_recall=mpcr, harmonic_mean=harmonic_mean(r["accuracy"], acc),
                 base_classes=[names[c] for c in base], new_classes=[names[c] for c in new],
                 n_test_new=int(te_n.sum()))
    return records


def run_cross_dataset(train_features: ArrayLike, train_labels: ArrayLike, test_features: ArrayLike,
                      test_labels: ArrayLike, target_features: ArrayLike, target_labels: ArrayLike,
                      methods: Sequence[str], shots: Iterable[int | str], seeds: Iterable[int], *,
                      class_names: Sequence[str], target_class_names: Sequence[str],
                      zeroshot_weights: ArrayLike | None = None,
                      target_zeroshot_weights: ArrayLike | None = None,
                      **sweep: Any) -> list[dict[str, Any]]:
    """Fit on the source (as :func:`run_sweep`), then score each fitted estimator on a target
    source's test features among the target's classes.

    Returns:
        run_sweep's records (``accuracy``: the source's test split) with ``target_accuracy``,
        ``target_mean_per_class_recall`` and ``n_test_target``.
    """
    check_transferable(methods, "cross-dataset")
    yt = to_labels(target_labels, "target_labels")
    Xt = to_tensor(target_features, "target_features")
    if len(yt) != len(Xt):
        raise DataError(f"target features ({len(Xt)}) and labels ({len(yt)}) differ in length")
    scored: dict = {}
    hook = _scorer(scored, list(target_class_names), target_zeroshot_weights, Xt, yt,
                   sweep.pop("on_fit", None))
    records = run_sweep(train_features, train_labels, test_features, test_labels, methods, shots,
                        seeds, class_names=class_names, zeroshot_weights=zeroshot_weights,
                        on_fit=hook, **sweep)
    for r in records:
        acc, mpcr = scored[(r["method"], str(r["shots"]), r["seed"])]
        r.update(evaluation="cross_dataset", target_accuracy=acc,
                 target_mean_per_class_recall=mpcr, n_test_target=int(len(yt)))
    return records


def summarize_transfer(records: Sequence[dict[str, Any]]) -> str:
    """A markdown table, mean ± std over seeds in %: base / new / H (base-to-new) or source /
    target (cross-dataset), one row per method × shots."""
    if not records:
        return ""
    b2n = records[0].get("evaluation") == "base_to_new"
    cols = (("base_accuracy", "new_accuracy", "harmonic_mean") if b2n
            else ("accuracy", "target_accuracy"))
    heads = ("base", "new", "H") if b2n else ("source", "target")
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        groups.setdefault((r["method"], str(r["shots"])), []).append(r)
    lines = ["| method | shots | " + " | ".join(heads) + " |", "|---|---:|" + "---:|" * len(heads)]
    for (m, k), rs in groups.items():
        cells = []
        for c in cols:
            v = 100 * np.asarray([r[c] for r in rs], dtype=float)
            cells.append(f"{v.mean():.1f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.1f}")
        lines.append(f"| {m} | {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
